package gcpkms_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/stretchr/testify/require"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/phicrypt/phicrypt/kms/gcpkms"
)

// fakeKMS implements the Encrypt and Decrypt methods of Cloud KMS's
// KeyManagementService over gRPC, with real AES-256-GCM per key version,
// the AAD bound, and the CRC32C checks of the real service. It is a test
// double for the server side only: the client under test is Google's.
//
// A ciphertext is the key version (4 bytes, big-endian), then
// AES-256-GCM's random nonce, the encrypted data and the tag; the
// associated data is the CryptoKey's name, a zero byte, the version and
// the request's AAD, so a ciphertext opens only under its own key, version
// and AAD.
type fakeKMS struct {
	kmspb.UnimplementedKeyManagementServiceServer

	addr string // host:port on 127.0.0.1

	mu   sync.Mutex
	keys map[string]*fakeKey

	fault   atomic.Pointer[fault]
	lastAAD atomic.Pointer[[]byte]
	calls   atomic.Int64 // Encrypt and Decrypt calls received
}

type fakeKey struct {
	versions []cipher.AEAD // version n at index n-1
	disabled map[uint32]bool
	primary  uint32
}

// fault is what the server does instead of, or to, its answers.
type fault struct {
	code    codes.Code // answer with this status
	message string

	hang                bool // never answer
	corruptCiphertext   bool // flip a bit of Encrypt's ciphertext, keep its checksum
	corruptPlaintext    bool // flip a bit of Decrypt's plaintext, keep its checksum
	ignoreAAD           bool // do not bind the AAD, and do not claim to have verified it
	unverifiedPlaintext bool // do not claim to have verified the plaintext
}

// startFake starts a fakeKMS on 127.0.0.1 and returns it with client
// options that reach it over insecure transport credentials (tests only).
func startFake(t testing.TB) (*fakeKMS, []option.ClientOption) {
	t.Helper()
	f := &fakeKMS{keys: map[string]*fakeKey{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.addr = lis.Addr().String()
	srv := grpc.NewServer()
	kmspb.RegisterKeyManagementServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return f, []option.ClientOption{
		option.WithEndpoint(f.addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

var keyCount atomic.Int64

// createKey adds a CryptoKey with one version and returns its name.
func (f *fakeKMS) createKey(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("projects/phicrypt-test/locations/europe-west1/keyRings/hospital/cryptoKeys/phi-%d", keyCount.Add(1))
	f.mu.Lock()
	f.keys[name] = &fakeKey{disabled: map[uint32]bool{}}
	f.mu.Unlock()
	f.rotate(t, name)
	return name
}

// rotate adds a version to a key and makes it primary.
func (f *fakeKMS) rotate(t testing.TB, name string) uint32 {
	t.Helper()
	secret := make([]byte, 32)
	_, err := rand.Read(secret)
	require.NoError(t, err)
	b, err := aes.NewCipher(secret)
	require.NoError(t, err)
	a, err := cipher.NewGCMWithRandomNonce(b)
	require.NoError(t, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.keys[name]
	k.versions = append(k.versions, a)
	k.primary = uint32(len(k.versions))
	return k.primary
}

// disable disables a key version.
func (f *fakeKMS) disable(name string, version uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[name].disabled[version] = true
}

func crc(b []byte) int64 { return int64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))) }

// checkCRC verifies an optional request checksum as Cloud KMS does.
func checkCRC(field string, data []byte, sum *wrapperspb.Int64Value) error {
	if sum != nil && sum.GetValue() != crc(data) {
		return status.Errorf(codes.InvalidArgument, "The checksum in field %s_crc32c did not match the data in field %s.", field, field)
	}
	return nil
}

func (f *fakeKMS) before(ctx context.Context) (*fault, error) {
	f.calls.Add(1)
	flt := f.fault.Load()
	switch {
	case flt == nil:
		return &fault{}, nil
	case flt.hang:
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	case flt.code != codes.OK:
		return nil, status.Error(flt.code, flt.message)
	}
	return flt, nil
}

// key returns the named key and a version of it: the primary if v is 0.
func (f *fakeKMS) key(name string, v uint32) (cipher.AEAD, uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[name]
	if !ok {
		return nil, 0, status.Errorf(codes.NotFound, "CryptoKey %s not found.", name)
	}
	if v == 0 {
		v = k.primary
	}
	if v < 1 || int(v) > len(k.versions) {
		return nil, 0, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	if k.disabled[v] {
		return nil, 0, status.Errorf(codes.FailedPrecondition, "%s/cryptoKeyVersions/%d is not enabled, current state is: DISABLED.", name, v)
	}
	return k.versions[v-1], v, nil
}

func associatedData(name string, hdr, aad []byte) []byte {
	return append(append(append([]byte(name), 0), hdr...), aad...)
}

func (f *fakeKMS) Encrypt(ctx context.Context, req *kmspb.EncryptRequest) (*kmspb.EncryptResponse, error) {
	flt, err := f.before(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkCRC("plaintext", req.GetPlaintext(), req.GetPlaintextCrc32C()); err != nil {
		return nil, err
	}
	if err := checkCRC("additional_authenticated_data", req.GetAdditionalAuthenticatedData(), req.GetAdditionalAuthenticatedDataCrc32C()); err != nil {
		return nil, err
	}
	if strings.Contains(req.GetName(), "/cryptoKeyVersions/") {
		return nil, status.Error(codes.Unimplemented, "the fake encrypts with a CryptoKey's primary version only")
	}
	a, v, err := f.key(req.GetName(), 0)
	if err != nil {
		return nil, err
	}
	aad := req.GetAdditionalAuthenticatedData()
	if flt.ignoreAAD {
		aad = nil
	}
	f.lastAAD.Store(&aad)
	hdr := binary.BigEndian.AppendUint32(nil, v)
	ct := a.Seal(hdr, nil, req.GetPlaintext(), associatedData(req.GetName(), hdr, aad))
	sum := crc(ct)
	if flt.corruptCiphertext {
		ct[len(ct)-1] ^= 1
	}
	return &kmspb.EncryptResponse{
		Name:                    fmt.Sprintf("%s/cryptoKeyVersions/%d", req.GetName(), v),
		Ciphertext:              ct,
		CiphertextCrc32C:        wrapperspb.Int64(sum),
		VerifiedPlaintextCrc32C: req.GetPlaintextCrc32C() != nil && !flt.unverifiedPlaintext,
		VerifiedAdditionalAuthenticatedDataCrc32C: req.GetAdditionalAuthenticatedDataCrc32C() != nil && !flt.ignoreAAD,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

func (f *fakeKMS) Decrypt(ctx context.Context, req *kmspb.DecryptRequest) (*kmspb.DecryptResponse, error) {
	flt, err := f.before(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkCRC("ciphertext", req.GetCiphertext(), req.GetCiphertextCrc32C()); err != nil {
		return nil, err
	}
	if err := checkCRC("additional_authenticated_data", req.GetAdditionalAuthenticatedData(), req.GetAdditionalAuthenticatedDataCrc32C()); err != nil {
		return nil, err
	}
	ct := req.GetCiphertext()
	if len(ct) < 4 {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: the ciphertext is invalid.")
	}
	a, v, err := f.key(req.GetName(), binary.BigEndian.Uint32(ct))
	if err != nil {
		return nil, err
	}
	aad := req.GetAdditionalAuthenticatedData()
	if flt.ignoreAAD {
		aad = nil
	}
	pt, err := a.Open(nil, nil, ct[4:], associatedData(req.GetName(), ct[:4], aad))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "Decryption failed: verify that 'name' refers to the correct CryptoKey.")
	}
	sum := crc(pt)
	if flt.corruptPlaintext {
		pt[0] ^= 1
	}
	f.mu.Lock()
	primary := f.keys[req.GetName()].primary
	f.mu.Unlock()
	return &kmspb.DecryptResponse{
		Plaintext:       pt,
		PlaintextCrc32C: wrapperspb.Int64(sum),
		UsedPrimary:     v == primary,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

// open returns a KEK on key through the fake.
func open(t testing.TB, opts []option.ClientOption, key string) *gcpkms.KEK {
	t.Helper()
	k, err := gcpkms.New(context.Background(), gcpkms.Config{Key: key, ClientOptions: opts})
	require.NoError(t, err)
	t.Cleanup(func() { k.Close() })
	return k
}

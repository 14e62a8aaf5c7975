// Package kmsopen opens a KEK of any backend of this module from its URI,
// the form KEKs take in configuration files and command lines:
//
//	local:///etc/phicrypt/kek.json
//	local:?env=PHICRYPT_KEK
//	vault://vault.example.org:8200/transit/keys/phi
//	aws-kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-…
//	gcp-kms://projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k
//	pkcs11:token=phi;object=kek?module-path=/usr/lib/softhsm/libsofthsm2.so
//
// Each backend's Open documents its URI and where its credentials come
// from (never the URI itself). Importing this package links every backend;
// a program that needs one backend imports that backend and calls kms.Open
// with its Opener alone. The PKCS#11 backend needs cgo: without it, pkcs11:
// URIs fail with kms.ErrInvalidInput and pkcs11.ErrNoCgo.
package kmsopen

import (
	"context"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/awskms"
	"github.com/phicrypt/phicrypt/kms/gcpkms"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/kms/pkcs11"
	"github.com/phicrypt/phicrypt/kms/vault"
)

// Openers returns the Opener of every backend, by scheme.
func Openers() map[string]kms.Opener {
	m := map[string]kms.Opener{
		local.Scheme:  local.Open,
		vault.Scheme:  vault.Open,
		awskms.Scheme: awskms.Open,
		gcpkms.Scheme: gcpkms.Open,
		pkcs11.Scheme: pkcs11.Open,
	}
	return m
}

// Open opens the KEK that uri names, behind kms.Resilient with its
// production defaults: transient failures and throttling are retried with
// backoff (kms.DefaultResilientAttempts attempts), a circuit breaker fails
// fast while the KMS is down, and each attempt is bounded by
// kms.DefaultCallTimeout. Backends turn their SDKs' own retries off, so
// this is where retries come from. The KEK keeps the optional interfaces
// of the backend's (kms.Identifier, kms.Rewrapper) and may hold resources
// (a Vault token, a PKCS#11 session pool): close it with io.Closer when it
// has one.
//
// For other settings (an observer for metrics, a breaker shared by several
// KEKs), call OpenResilient; for the backend alone, call kms.Open with
// Openers().
func Open(ctx context.Context, uri string) (kms.KEK, error) {
	return OpenResilient(ctx, uri, kms.ResilientConfig{})
}

// OpenResilient is Open with cfg for kms.Resilient; zero fields of cfg take
// its defaults.
func OpenResilient(ctx context.Context, uri string, cfg kms.ResilientConfig) (kms.KEK, error) {
	kek, err := kms.Open(ctx, uri, Openers())
	if err != nil {
		return nil, err
	}
	return kms.Resilient(kek, cfg), nil
}

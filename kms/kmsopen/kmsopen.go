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
// URIs fail with kms.ErrInvalidInput.
package kmsopen

import (
	"context"

	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/awskms"
	"github.com/phicrypt/phicrypt/kms/gcpkms"
	"github.com/phicrypt/phicrypt/kms/local"
	"github.com/phicrypt/phicrypt/kms/vault"
)

// Openers returns the Opener of every backend, by scheme.
func Openers() map[string]kms.Opener {
	m := map[string]kms.Opener{
		local.Scheme:  local.Open,
		vault.Scheme:  vault.Open,
		awskms.Scheme: awskms.Open,
		gcpkms.Scheme: gcpkms.Open,
	}
	addCgo(m)
	return m
}

// Open opens the KEK that uri names. The KEK may hold resources (a Vault
// token, a PKCS#11 session pool): close it with io.Closer when it has one.
func Open(ctx context.Context, uri string) (kms.KEK, error) {
	return kms.Open(ctx, uri, Openers())
}

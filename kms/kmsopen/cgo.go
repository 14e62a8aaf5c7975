//go:build cgo

package kmsopen

import (
	"github.com/phicrypt/phicrypt/kms"
	"github.com/phicrypt/phicrypt/kms/pkcs11"
)

func addCgo(m map[string]kms.Opener) { m[pkcs11.Scheme] = pkcs11.Open }

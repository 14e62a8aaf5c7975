module github.com/phicrypt/phicrypt/kms/pkcs11

go 1.26.0

require (
	github.com/miekg/pkcs11 v1.1.2
	github.com/phicrypt/phicrypt v0.0.0-00010101000000-000000000000
	github.com/stretchr/testify v1.12.1
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect

// The repository's own modules come from the working tree (go.work does
// the same for the whole repository).
replace github.com/phicrypt/phicrypt => ../..

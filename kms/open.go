package kms

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// An Opener opens the KEK that a URI of one scheme names, reading any
// credentials from the URI's documented sources (environment variables,
// files), never from the URI itself. Each backend package exports one as
// Open.
type Opener func(ctx context.Context, uri *url.URL) (KEK, error)

// Open opens the KEK named by uri with the Opener that openers maps its
// scheme to. Applications configure KEKs as URIs, for example:
//
//	local:///etc/phicrypt/kek.json
//	vault://vault.example.org:8200/transit/keys/phi
//	aws-kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-…
//	gcp-kms://projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k
//	pkcs11:token=phi;object=kek?module-path=/usr/lib/softhsm/libsofthsm2.so
//
// The package kms/kmsopen maps every backend of this module. A URI that does
// not parse, or whose scheme has no Opener, fails with ErrInvalidInput;
// errors show the URI with its user information (user name and password)
// redacted.
func Open(ctx context.Context, uri string, openers map[string]Opener) (KEK, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, NewError(ctx, "open", "", ErrInvalidInput, fmt.Errorf("key URI does not parse"))
	}
	scheme := strings.ToLower(u.Scheme)
	open, ok := openers[scheme]
	if !ok || open == nil {
		return nil, NewError(ctx, "open", "", ErrInvalidInput, fmt.Errorf("no KEK backend for scheme %q in %s", scheme, redactedURI(u)))
	}
	if err := ctx.Err(); err != nil {
		return nil, NewError(ctx, "open", "", err, nil)
	}
	return open(ctx, u)
}

// redactedURI returns u as a string with its user information replaced by
// "REDACTED": not only a password but a user name alone may be a token.
func redactedURI(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	r := *u
	r.User = url.User("REDACTED")
	return r.String()
}

// URIQuery returns the query parameters of a key URI for an [Opener],
// after checking that the URI holds no credentials (no user or password:
// they would end up in configuration files and logs), that the query
// parses, and that every parameter is one of allowed and given once. A
// misspelt parameter is refused rather than silently ignored. Openers
// report its error as [ErrInvalidInput] (see [NewError]).
func URIQuery(u *url.URL, allowed ...string) (url.Values, error) {
	if u.User != nil {
		// Not even the user name is repeated: it could be a token.
		return nil, fmt.Errorf("credentials must not be in the key URI; the backend reads them from its documented environment variables or files")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("key URI query does not parse")
	}
	for name, vs := range q {
		if !slices.Contains(allowed, name) {
			return nil, fmt.Errorf("unknown query parameter %q in key URI", name)
		}
		if len(vs) != 1 {
			return nil, fmt.Errorf("query parameter %q given %d times in key URI", name, len(vs))
		}
	}
	return q, nil
}

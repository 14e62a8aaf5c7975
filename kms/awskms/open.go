package awskms

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/phicrypt/phicrypt/kms"
)

// Scheme is the URI scheme of AWS KMS keys.
const Scheme = "aws-kms"

var _ kms.Opener = Open

// Open is the kms.Opener of AWS KMS keys. The URI is the scheme and the
// key, as a key ARN, an alias or a key id:
//
//	aws-kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
//	aws-kms:alias/phi?region=eu-west-1
//	aws-kms://alias/phi?region=eu-west-1&endpoint=https://vpce-0abc.kms.eu-west-1.vpce.amazonaws.com
//
// Write an ARN without "//": "aws-kms://arn:aws:…" is not a valid URL (its
// colons read as a port), and url.Parse and kms.Open refuse it. The first
// form is also the KEK's default key id. Query parameters, all optional:
// region, endpoint (an https URL, or http for a server on the loopback
// interface), fips=true (Config.FIPSEndpoint) and key-id
// (Config.KeyID). Unknown parameters are refused.
//
// Credentials never come from the URI: the SDK's default chain reads them
// (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared
// files, SSO, web identity, ECS and EC2 roles).
func Open(ctx context.Context, u *url.URL) (kms.KEK, error) {
	cfg, err := configFromURI(u)
	if err != nil {
		return nil, kms.NewError(ctx, "open", "", kms.ErrInvalidInput, err)
	}
	return New(ctx, cfg)
}

func configFromURI(u *url.URL) (Config, error) {
	var cfg Config
	q, err := kms.URIQuery(u, "region", "endpoint", "fips", "key-id")
	if err != nil {
		return cfg, fmt.Errorf("awskms: %w", err)
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return cfg, fmt.Errorf("awskms: scheme must be %s", Scheme)
	}
	switch {
	case u.Opaque != "":
		cfg.Key = u.Opaque
	case u.Host != "":
		cfg.Key = u.Host + u.Path
	default:
		cfg.Key = strings.TrimPrefix(u.Path, "/")
	}
	if cfg.Key == "" || strings.ContainsAny(cfg.Key, " \t\r\n") {
		return cfg, fmt.Errorf("awskms: want aws-kms:<key ARN, alias or id>, got %s", u.Redacted())
	}
	cfg.Region, cfg.KeyID = q.Get("region"), q.Get("key-id")
	if e := q.Get("endpoint"); e != "" {
		eu, err := url.Parse(e)
		if err != nil || eu.Host == "" || eu.User != nil || !(eu.Scheme == "https" || eu.Scheme == "http" && isLoopback(eu.Hostname())) {
			return cfg, fmt.Errorf("awskms: endpoint must be an https URL, or http on the loopback interface")
		}
		cfg.Endpoint = e
	}
	switch q.Get("fips") {
	case "", "false":
	case "true":
		cfg.FIPSEndpoint = true
	default:
		return cfg, fmt.Errorf("awskms: fips must be true or false")
	}
	return cfg, nil
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

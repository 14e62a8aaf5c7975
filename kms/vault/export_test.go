package vault

// Logins returns the number of logins (AppRole or AuthMethod) so far.
func (k *KEK) Logins() int64 { return k.auth.logins.Load() }

// Renewals returns the number of token renewals so far.
func (k *KEK) Renewals() int64 { return k.auth.renewals.Load() }

// Token returns the client's current token, to check revocation.
func (k *KEK) Token() string { return k.client.Token() }

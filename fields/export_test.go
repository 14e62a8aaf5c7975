package fields

// NYSIISCode is the strict NYSIIS code of s, for tests that group rows by
// the value a sounds-like index sees (recall_test.go counts false
// positives per distinct value).
func NYSIISCode(s string) string { return string(appendNYSIIS(nil, []byte(s), true)) }

package testsvc

// DirOf returns a service's temporary folder, for tests of cleanup.
func DirOf(svc any) string {
	switch s := svc.(type) {
	case *Postgres:
		return s.dir
	case *Vault:
		return s.dir
	case *LocalKMS:
		return s.dir
	case *SoftHSM:
		return s.dir
	}
	return ""
}

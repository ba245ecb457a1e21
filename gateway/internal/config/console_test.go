package config

import (
	"strings"
	"testing"
)

// console.database is a file relative to the configuration, or a
// PostgreSQL URL taken as it is.
func TestConsoleDatabase(t *testing.T) {
	for _, tc := range []struct{ database, want string }{
		{"", "/etc/sluice/state/activity.db"},
		{"activity.db", "/etc/sluice/activity.db"},
		{"/var/lib/sluice/a.db", "/var/lib/sluice/a.db"},
		{"postgres://sluice:pw@db.example.test:5432/sluice", "postgres://sluice:pw@db.example.test:5432/sluice"},
		{"postgresql://sluice@db.example.test/sluice?sslmode=verify-full", "postgresql://sluice@db.example.test/sluice?sslmode=verify-full"},
	} {
		c, err := Parse("/etc/sluice/gateway.toml", []byte(`data_dir = "state"`+adminBase+`
[console]
database = "`+tc.database+`"
`))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ConsoleDatabase(); got != tc.want {
			t.Errorf("database %q: ConsoleDatabase = %q, want %q", tc.database, got, tc.want)
		}
	}
}

// A URL that does not parse is an error that does not show its password.
func TestConsoleDatabaseBadURL(t *testing.T) {
	_, err := Parse("/etc/sluice/gateway.toml", []byte(adminBase+`
[console]
database = "postgres://sluice:s3cret@[::1/sluice"
`))
	if err == nil || !strings.Contains(err.Error(), "console.database: not a URL") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %v, want console.database's without the password", err)
	}
}

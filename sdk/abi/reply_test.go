package abi

import "testing"

func TestCheckReply(t *testing.T) {
	good := []struct {
		code     uint16
		enhanced string
	}{{550, ""}, {550, "5.1.1"}, {451, "4.3.0"}, {421, "4.7.999"}, {599, "5.0.0"}}
	for _, c := range good {
		if err := CheckReply(c.code, c.enhanced); err != nil {
			t.Errorf("CheckReply(%d, %q) = %v, want nil", c.code, c.enhanced, err)
		}
	}
	bad := []struct {
		code     uint16
		enhanced string
	}{
		{250, ""}, {600, ""}, {0, ""}, {399, "4.0.0"},
		{550, "4.1.1"}, {451, "5.7.1"}, {550, "5.1"}, {550, "5.1.1.1"},
		{550, "55.1.1"}, {550, "5.1000.1"}, {550, "5.a.1"}, {550, "5..1"}, {550, "5.+1.1"}, {550, "3.1.1"},
	}
	for _, c := range bad {
		if err := CheckReply(c.code, c.enhanced); err == nil {
			t.Errorf("CheckReply(%d, %q) = nil, want an error", c.code, c.enhanced)
		}
	}
}

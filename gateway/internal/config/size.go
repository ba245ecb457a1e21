package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a number of bytes, written as an integer or with a unit:
// "25MiB", "512KiB", "10MB".
type Size int64

var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// UnmarshalTOML accepts an integer or a string with a unit.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("size must not be negative: %d", v)
		}
		*s = Size(v)
		return nil
	case string:
		n, err := parseSize(v)
		if err != nil {
			return err
		}
		*s = n
		return nil
	}
	return fmt.Errorf("a size is an integer or a string like \"25MiB\", not %T", v)
}

// String writes the size in the largest binary unit that holds it whole.
func (s Size) String() string {
	for _, u := range sizeUnits[:3] {
		if f := Size(u.factor); s >= f && s%f == 0 && (s/f < 1024 || u.suffix == "GiB") {
			return strconv.FormatInt(int64(s/f), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

func parseSize(text string) (Size, error) {
	t := strings.TrimSpace(text)
	factor := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, factor = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/factor {
		return 0, fmt.Errorf("not a size (like \"25MiB\" or 1048576): %q", text)
	}
	return Size(n * factor), nil
}

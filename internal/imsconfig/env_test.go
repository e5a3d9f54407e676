package imsconfig

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Settings shaped like imsflow's: a named nested struct, one with a
// prefix, one through a pointer, and a field name that occurs twice.
type inner struct {
	Wait    time.Duration `env:"WAIT" envDefault:"1s"`
	Workers int           `env:"WORKERS" envDefault:"1"`
}

type nats struct {
	Replicas int `env:"NATS_REPLICAS" envDefault:"1"`
}

type settings struct {
	NATS   nats
	Import inner  `envPrefix:"IMPORT_"`
	Export *inner `envPrefix:"EXPORT_"`
	Anon   struct {
		Rate float64 `env:"RATE" envDefault:"1"`
	}
	Raw      bool   `env:"IMG_AS_RAW"`
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

func TestParseEnvNamesVariables(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string // the problems, in order
	}{
		{"good", map[string]string{"IMPORT_WAIT": "2s", "EXPORT_WORKERS": "3"}, nil},
		{"duration", map[string]string{"IMPORT_WAIT": "x"}, []string{`IMPORT_WAIT: time: invalid duration "x"`}},
		{"the nested struct whose variable is set", map[string]string{"EXPORT_WORKERS": "many"},
			[]string{`EXPORT_WORKERS: "many" is not a whole number`}},
		{"named nested struct", map[string]string{"NATS_REPLICAS": "three"}, []string{`NATS_REPLICAS: "three" is not a whole number`}},
		{"anonymous struct", map[string]string{"RATE": "fast"}, []string{`RATE: "fast" is not a number`}},
		{"bool", map[string]string{"IMG_AS_RAW": "maybe"}, []string{`IMG_AS_RAW: "maybe" is not true or false`}},
		{"range", map[string]string{"IMPORT_WORKERS": "99999999999999999999"}, []string{`IMPORT_WORKERS: "99999999999999999999" is out of range`}},
		{"every problem", map[string]string{"IMPORT_WAIT": "x", "EXPORT_WAIT": "y", "NATS_REPLICAS": "z"}, []string{
			`NATS_REPLICAS: "z" is not a whole number`, `IMPORT_WAIT: time: invalid duration "x"`, `EXPORT_WAIT: time: invalid duration "y"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := settings{Export: &inner{}}
			err := ParseEnv(&s, tt.env)
			if tt.want == nil {
				if err != nil || s.Import.Wait != 2*time.Second || s.Export.Workers != 3 || s.LogLevel != "info" {
					t.Fatalf("ParseEnv = %v, %+v", err, s)
				}
				return
			}
			var problems EnvError
			if !errors.As(err, &problems) {
				t.Fatalf("ParseEnv = %v (%T), want an EnvError", err, err)
			}
			if got := err.Error(); got != strings.Join(tt.want, "; ") {
				t.Errorf("error %q\nwant  %q", got, strings.Join(tt.want, "; "))
			}
			for _, p := range problems {
				var ve *VariableError
				if !errors.As(p, &ve) || strings.Contains(p.Error(), "field") {
					t.Errorf("problem %q names no variable", p)
				}
			}
		})
	}
}

// TestParseEnvOfConfig: Parse reports a wrong IMS setting by its name too.
func TestParseEnvOfConfig(t *testing.T) {
	t.Parallel()
	_, err := Parse(map[string]string{"IMS_TIMEOUT": "soon", "IMS_RATE_BURST": "lots"})
	if err == nil || !strings.Contains(err.Error(), `IMS_RATE_BURST: "lots" is not a whole number`) ||
		!strings.Contains(err.Error(), `IMS_TIMEOUT: time: invalid duration "soon"`) || strings.Contains(err.Error(), "Timeout") {
		t.Errorf("Parse = %v", err)
	}
}

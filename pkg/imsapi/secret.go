package imsapi

import (
	"fmt"
	"log/slog"
)

const redacted = "[redacted]"

// Secret holds a credential (a secret key, a security token, an IAM token).
// It prints as "[redacted]" through every fmt verb, encoding/json,
// encoding.TextMarshaler and slog, so a Secret that reaches a log line, an
// error or an event shows nothing. Call [Secret.Reveal] where the value itself
// is needed.
type Secret string

// Reveal returns the secret value. Use it only to authenticate a request.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString returns "[redacted]", for %#v.
func (s Secret) GoString() string { return redacted }

// Format prints "[redacted]" for every verb, including the ones fmt would
// otherwise answer with the raw value (%d, %x, ...).
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON encodes the secret as the JSON string "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[redacted]", for encoders that use encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue keeps the secret out of log/slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

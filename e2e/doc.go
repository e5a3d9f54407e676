// Package e2e holds end-to-end tests of imsflow with its real parts: an
// embedded NATS JetStream, a MinIO server publishing its bucket events to
// it, the IMS emulator reading the same bucket, and the functions.
package e2e

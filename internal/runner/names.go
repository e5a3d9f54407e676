package runner

import "github.com/imsflow/imsflow/pkg/events"

// Every name imsflow gives in NATS, in one place: streams, subjects,
// key-value buckets, the keys in them and the message-ID prefixes. The
// public subjects (inputs and outputs) are the contract's, in pkg/events;
// the internal ones are here. names_test.go checks that every subject
// falls in exactly one stream.
//
// Keys:
//
//	imsflow_imports  v.<hash>               an object version's record (internal/ledger.Record)
//	                 mf.<hash>              a RAW file's bitmap was seen
//	                 wait.<hash>            a RAW file waits for its bitmap (notification, first seen)
//	imsflow_exports  r.<hash>               an export request's record (internal/ledger.Record)
//	                 sum.<hash>             an object's checksum being read, then its digest (verify)
//	                 sumwait.<hash>         an object waits for its checksum file (notification, first seen)
//	imsflow_slots    slot.<NNNN>            an in-flight slot; its value is the owner's v.<hash>
//	                 repl.<n>               a replication slot (5 per tenant); its value <lifecycle>/<leg>/<attempt>
//	imsflow_jobs     j.<job ID>             a tracked job (the poller's state)
//	                 i.<image ID>           an import known by its image (an earlier attempt's)
//	                 x.<hash>               an export known by its target (an earlier attempt's)
//	imsflow_lifecycles l.<hash>             an imported image's lifecycle (internal/lifecycle.Record)
//	                 latest.<family>        the family's latest images (internal/lifecycle.Pointer)
//	imsflow_batches  see internal/batches
//	imsflow_replicas see internal/rateshare
//	imsflow_attempts <function>.<seq>       failures of a message (the runner)
//
// Message IDs (Nats-Msg-Id), each deterministic so that JetStream drops
// a republished duplicate within the stream's window:
//
//	job:<ref>:submitted, job:<ref>:<status>, job:<ref>:stalled, job:<ref>:progress:<n>
//	                        hand-offs and job events (ref: events.JobSubmitted.Ref)
//	rejected:<hash>         a rejected input
//	waiting:<hash>          an import waiting for a companion (its bitmap, its checksum file)
//	batch:<id>:completed    a batch's totals
//	split:<record>          one record of a notification that carried several
//	rejoin:<key>:<rev>      a waiting RAW file's notification, replayed when its bitmap arrives
//	ingest:<record>         a record the HTTP ingest received
//	bulk:<...>              an input published by imsflow bulk
//	dlq:<function>:<seq>    a dead letter
//	lifecycle:<id>:<generation>:<status>
//	                        a lifecycle's completion
//	retry:<id>:<leg>:<attempt>
//	                        a request to run a lifecycle leg again (imsflow lifecycle retry)
const (
	// StreamIn holds the inputs (imsflow.in.>) as a work queue: the import
	// and export consumers take disjoint subjects, and a message is gone
	// once acknowledged. MinIO's NATS target publishes into it.
	StreamIn = "IMSFLOW_IN"
	// StreamJobs holds internal traffic: hand-offs to the poller, its
	// scheduled poll timers and the sweep's ticks.
	StreamJobs = "IMSFLOW_JOBS"
	// StreamOut keeps every output event for a week, for any subscriber.
	StreamOut = "IMSFLOW_OUT"
	// StreamDLQ keeps dead letters for a month.
	StreamDLQ = "IMSFLOW_DLQ"

	// BucketImports maps an object version to its import's state: the
	// durable guard against importing one version twice.
	BucketImports = "imsflow_imports"
	// BucketExports maps an export request ID to its state.
	BucketExports = "imsflow_exports"
	// BucketSlots holds one key per IMS image-creation job in flight
	// (SlotKeys) and one per cross-region copy running (repl.<n>).
	BucketSlots = "imsflow_slots"
	// SlotKeys filters the in-flight slots of image creation in BucketSlots.
	SlotKeys = "slot.*"
	// BucketJobs is the poller's state of every tracked job.
	BucketJobs = "imsflow_jobs"
	// BucketLifecycles holds each imported image's lifecycle and each
	// family's latest pointer.
	BucketLifecycles = "imsflow_lifecycles"
	// BucketBatches holds every batch's totals.
	BucketBatches = "imsflow_batches"
	// BucketReplicas holds a heartbeat per process sharing the IMS rate.
	BucketReplicas = "imsflow_replicas"
	// BucketAttempts counts the failures of each message that failed
	// (<function>.<stream sequence>); planned waits write nothing.
	BucketAttempts = "imsflow_attempts"
)

// Internal subjects.
const (
	SubjectIn       = "imsflow.in.>"
	SubjectJobsAll  = "imsflow.jobs.>"
	SubjectSchedAll = "imsflow.sched.>"

	// SubjectPollPrefix + <job key> is a job's fired poll timer;
	// SubjectSchedPollPrefix + <job key> holds its schedule.
	SubjectPollPrefix      = "imsflow.jobs.poll."
	SubjectSchedPollPrefix = "imsflow.sched.poll."
	// SubjectSweep is the poller's sweep tick, fired by the repeating
	// schedule on SubjectSweepSched.
	SubjectSweep      = "imsflow.jobs.sweep"
	SubjectSweepSched = "imsflow.sched.sweep"
	// SubjectRejoin takes a waiting RAW file's notification again when its
	// bitmap arrives; SubjectSplit, each record of a notification that
	// carried several. Both are import inputs (under events.SubjectObjects).
	SubjectRejoin = events.SubjectObjectsPrefix + "rejoin"
	SubjectSplit  = events.SubjectObjectsPrefix + "split"
)

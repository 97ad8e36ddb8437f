package intercept

// Decisions: a closed set, used verbatim as the "decision" metric label, the
// log field and reqscope.Scope.Decision.
const (
	DecisionAllowed           = "allowed"
	DecisionAllowedMultiple   = "allowed_multiple"
	DecisionRejectedDuplicate = "rejected_duplicate"
	DecisionReplayedPending   = "replayed_pending"
	DecisionRejectedPending   = "rejected_pending"
	DecisionFailedOpen        = "failed_open"
	DecisionFailedClosed      = "failed_closed"
	DecisionInvalidRequest    = "invalid_request"
	DecisionLookupRefused     = "lookup_refused" // 401/403/429 from the list call, passed back
	DecisionOff               = "off"
)

// Reasons behind a decision (reqscope.Scope.Reason and the "reason" log field).
// Not a metric label.
const (
	// allowed
	ReasonNoAccount          = "no_active_account"
	ReasonInitiatedUntracked = "initiated_without_lease" // INITIATED accounts the proxy did not create: they do not block
	ReasonLeaseStale         = "lease_stale"             // the lease's account is no longer INITIATED: dropped, forwarded

	// allowed_multiple
	ReasonOptIn           = "opt_in"
	ReasonMultipleAllowed = "auth_config_allows_multiple"

	// rejected_duplicate, replayed_pending / rejected_pending, lookup_refused, off
	ReasonActiveAccount = "active_account_exists"
	ReasonPendingLink   = "pending_link"
	ReasonLookupStatus  = "lookup_status"
	ReasonModeOff       = "mode_off"

	// failed_open / failed_closed
	ReasonLookupTimeout = "lookup_timeout"
	ReasonLookupError   = "lookup_error" // connection error, 5xx, not the expected JSON
	ReasonLockTimeout   = "lock_timeout"
	ReasonLockError     = "lock_error"
	ReasonLeaseError    = "lease_error"

	// invalid_request
	ReasonBodyTooLarge     = "body_too_large"
	ReasonBodyRead         = "body_read_error"
	ReasonUnsupportedEnc   = "unsupported_encoding"
	ReasonBadGzip          = "bad_gzip"
	ReasonNotJSON          = "not_json"
	ReasonNotObject        = "not_object"
	ReasonMissingMember    = "missing_member"
	ReasonBadMember        = "bad_member" // wrong JSON type or empty id
	ReasonCommaInID        = "comma_in_id"
	ReasonBadText          = "invalid_utf8"
	ReasonDuplicateMember  = "duplicate_member"
	ReasonBadAccountType   = "bad_account_type"
	ReasonBadAllowMultiple = "bad_allow_multiple"
	ReasonFlagInCompressed = "flag_in_compressed_body"
)

// Values of Config fields.
const (
	ModeEnforce = "enforce"
	ModeShadow  = "shadow"
	ModeOff     = "off"

	FailClosed = "closed"
	FailOpen   = "open"

	PendingReplay = "replay"
	PendingReject = "reject"
	PendingOff    = "off"

	AllowMultipleFlag  = "flag"
	AllowMultipleNever = "never"
)

// Results of metrics.Leases.
const (
	leaseHit    = "hit"
	leaseMiss   = "miss"
	leaseStale  = "stale"
	leaseStored = "stored"
)

// Reasons of metrics.LockErrors.
const (
	lockErrTimeout   = "timeout"
	lockErrLock      = "error"
	lockErrLeaseGet  = "lease_get"
	lockErrLeasePut  = "lease_put"
	lockErrLeaseDrop = "lease_drop"
)

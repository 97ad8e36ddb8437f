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
	// The check cannot be completed because of what the request asks (a
	// query Composio refuses, more accounts than the lookup reads, an item
	// it cannot classify): refused with 422 in every failure mode.
	DecisionRejectedUnverifiable = "rejected_unverifiable"
	DecisionOff                  = "off"
	DecisionClientGone           = "client_gone" // the client left before an answer: nothing written (logged as 499)

	// The sandbox policy on the Tool Router session routes also answers
	// allowed, invalid_request and off.
	DecisionDefaulted       = "defaulted"        // no tier sent: GUARD_SANDBOX_DEFAULT_SIZE inserted
	DecisionRejectedInvalid = "rejected_invalid" // workbench or its sandbox_size is not valid: 400
	DecisionRejectedPolicy  = "rejected_policy"  // a valid tier the policy does not allow: 403
)

// Reasons behind a decision (reqscope.Scope.Reason and the "reason" log field).
// Not a metric label.
const (
	// allowed
	ReasonNoAccount      = "no_active_account"
	ReasonPendingIgnored = "pending_ignored" // GUARD_PENDING_ACTION=off: INITIATED accounts do not block
	ReasonLeaseStale     = "lease_stale"     // the lease's account is no longer INITIATED: dropped, forwarded

	// allowed_multiple
	ReasonOptIn           = "opt_in"
	ReasonMultipleAllowed = "auth_config_allows_multiple"

	// rejected_duplicate, replayed_pending / rejected_pending, lookup_refused, off
	ReasonActiveAccount = "active_account_exists"
	ReasonPendingLink   = "pending_link"
	// rejected_pending: an INITIATED account within its lifetime that this
	// credential holds no answer for (made with another credential, on a
	// replica without shared state, or around the proxy), or one whose answer
	// it holds for another request (callback_url, alias, experimental differ).
	ReasonPendingUntracked = "pending_link_untracked"
	ReasonPendingDiffers   = "pending_link_request_differs"
	// rejected_unverifiable
	ReasonLookupRejected  = "lookup_rejected_query" // Composio answered the lookup with a 4xx other than 401/403/429
	ReasonTooManyAccounts = "lookup_too_many_pages"
	ReasonUnknownItem     = "lookup_unknown_item"
	ReasonSessionNoUser   = "session_without_user" // a Tool Router session that names no user

	// rejected_duplicate on a session link with multi-account on
	ReasonMaxAccounts = "max_accounts_per_toolkit"

	// lookup_refused, failed_*: the Tool Router session could not be read
	ReasonSessionStatus  = "session_status" // Composio's 401/403/404/429 to the session read, handed back
	ReasonSessionError   = "session_error"
	ReasonOutcomeUnknown = "earlier_outcome_unknown" // an earlier link's answer was lost and an INITIATED account exists
	ReasonLookupStatus   = "lookup_status"
	ReasonModeOff        = "mode_off"

	// failed_open / failed_closed
	ReasonLookupTimeout = "lookup_timeout"
	ReasonLookupError   = "lookup_error"        // connection error, 5xx, not the expected JSON
	ReasonLookupBreaker = "lookup_breaker_open" // the credential's lookup breaker is open: Composio kept failing, not called
	ReasonLockTimeout   = "lock_timeout"
	ReasonLockError     = "lock_error"
	ReasonLeaseError    = "lease_error"
	// The lock was taken but fewer than GUARD_REDIS_MIN_REPLICAS replicas
	// acknowledged it in time (it was released again).
	ReasonLockUnreplicated = "lock_unreplicated"

	// invalid_request
	ReasonBodyTooLarge       = "body_too_large"
	ReasonBodyRead           = "body_read_error"
	ReasonBodyTimeout        = "body_read_timeout"
	ReasonClientGone         = "client_gone"
	ReasonUnsupportedEnc     = "unsupported_encoding"
	ReasonBadGzip            = "bad_gzip"
	ReasonNotJSON            = "not_json"
	ReasonNotObject          = "not_object"
	ReasonMissingMember      = "missing_member"
	ReasonBadMember          = "bad_member" // wrong JSON type or empty id
	ReasonCommaInID          = "comma_in_id"
	ReasonBadText            = "invalid_utf8"
	ReasonDuplicateMember    = "duplicate_member"
	ReasonBadAccountType     = "bad_account_type"
	ReasonBadAllowMultiple   = "bad_allow_multiple"
	ReasonFlagInCompressed   = "flag_in_compressed_body"
	ReasonIDTooLong          = "id_too_long"
	ReasonControlInID        = "control_character_in_id"
	ReasonQueryParams        = "query_parameters"
	ReasonCredentialTwice    = "credential_header_repeated"
	ReasonCredentialSchemes  = "credential_schemes_mixed"
	ReasonCredentialSpelling = "credential_header_misspelled"
	ReasonDisguised          = "method_disguised" // lowercase method or method-override header on a guarded path

	// sandbox policy: allowed, defaulted
	ReasonSizeAllowed      = "sandbox_size_allowed"
	ReasonNoSize           = "no_sandbox_size"    // the server default (standard) or the stored tier applies
	ReasonWorkbenchCleared = "workbench_cleared"  // PATCH workbench: null, back to the server default
	ReasonWorkbenchOff     = "workbench_disabled" // create with workbench.enable false: no default
	ReasonDefaultInserted  = "default_size_inserted"

	// sandbox policy: rejected_invalid, rejected_policy (and invalid_request
	// for the body reasons above, plus a non-boolean workbench.enable)
	ReasonBadSandboxSize = "bad_sandbox_size"
	ReasonBadWorkbench   = "bad_workbench"
	ReasonBadEnable      = "bad_workbench_enable"
	ReasonSizeAboveMax   = "sandbox_size_above_max"
	ReasonSizeNotAllowed = "sandbox_size_not_allowed"

	// session policies: rejected_policy, defaulted
	ReasonMultiAccountDenied  = "multi_account_denied"
	ReasonMaxAccountsAboveCap = "max_accounts_above_cap"
	ReasonManageConnectionsOn = "manage_connections_denied"
	ReasonManageOffInserted   = "manage_connections_disabled"
)

// Results of metrics.Leases.
const (
	leaseHit    = "hit"
	leaseMiss   = "miss"
	leaseStale  = "stale"
	leaseStored = "stored"
)

// Reason of metrics.LockErrors the guard counts: only what the backend
// cannot see. A backend counts its own failures (see lock.Redis*), so the
// guard counting them again would double them.
const lockErrTimeout = "timeout"

// Size labels of metrics.Sandbox besides the four tiers.
const (
	sizeDefault = "default" // no tier in the request
	sizeInvalid = "invalid" // not a tier, or the body could not be read
)

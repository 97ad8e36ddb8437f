package intercept

import (
	"fmt"
	"net/http"

	"github.com/composio-guard/composio-guard/internal/apierror"
	"github.com/composio-guard/composio-guard/internal/upstream"
)

// answer is one refusal the guard writes itself, from the catalogue below:
// Composio's envelope, the status, and what tells clients not to retry.
type answer struct {
	err apierror.Error
	opt apierror.Options
}

// write is the one place that writes an envelope of the guard's own.
func (a answer) write(w http.ResponseWriter, requestID string) {
	a.err.RequestID = requestID
	apierror.Write(w, &a.err, a.opt)
}

// answer is the envelope of a refused input. A 503 (the body budget) may be
// retried by the clients; every other refusal may not.
func (br *badRequest) answer() answer {
	return answer{apierror.Error{Message: br.message, Code: br.code, Slug: br.slug, Status: br.status,
		SuggestedFix: br.fix, AllowedSizes: br.allowedSizes},
		apierror.Options{NoRetry: br.status != http.StatusServiceUnavailable, Close: br.close, RetryAfterSeconds: br.retryAfter}}
}

const optInFix = "send the header " + apierror.HeaderAllowMultiple + ": true to create another one"

// on names what the accounts are on: the auth config, or for a session link
// on Composio's default auth config, the toolkit.
func on(in guarded) string {
	if in.AuthConfigID == "" && in.Toolkit != "" {
		return fmt.Sprintf("toolkit %q", in.Toolkit)
	}
	return fmt.Sprintf("auth config %q", in.AuthConfigID)
}

// answerDuplicate: the user already has an ACTIVE account on the auth config.
func answerDuplicate(in guarded, active []string) answer {
	return answer{apierror.Error{
		Message: fmt.Sprintf("User %q already has an ACTIVE connected account on %s.", in.UserID, on(in)),
		Code:    apierror.CodeMultipleAccounts, Slug: apierror.SlugMultipleAccounts, Status: http.StatusConflict,
		SuggestedFix:       "Use the existing connected account, or " + optInFix + " on purpose.",
		ExistingAccountIDs: active, UserID: in.UserID, AuthConfigID: in.AuthConfigID,
	}, apierror.Options{NoRetry: true}}
}

// answerPending: a link for the user on the auth config is still pending.
func answerPending(in guarded, accountID string) answer {
	return answer{apierror.Error{
		Message: fmt.Sprintf("A connection link for user %q on %s is still pending: connected account %s is INITIATED.",
			in.UserID, on(in), accountID),
		Code: apierror.CodeLinkPending, Slug: apierror.SlugLinkPending, Status: http.StatusConflict,
		SuggestedFix:       "Let the user finish the pending link (or wait until it expires), or " + optInFix + ".",
		ExistingAccountIDs: []string{accountID}, UserID: in.UserID, AuthConfigID: in.AuthConfigID,
	}, apierror.Options{NoRetry: true}}
}

// answerOutcomeUnknown: an earlier create's answer was lost and an
// INITIATED account exists that it may have made.
func answerOutcomeUnknown(in guarded, initiated []upstream.Account) answer {
	ids := make([]string, 0, len(initiated))
	for _, a := range initiated {
		ids = append(ids, a.ID)
	}
	return answer{apierror.Error{
		Message: fmt.Sprintf("An earlier link for user %q on %s may have been created but its answer was lost, and an INITIATED connected account exists.",
			in.UserID, on(in)),
		Code: apierror.CodeLinkPending, Slug: apierror.SlugLinkPending, Status: http.StatusConflict,
		SuggestedFix:       "List the user's INITIATED connected accounts and use that link, wait until it expires, or " + optInFix + ".",
		ExistingAccountIDs: ids, UserID: in.UserID, AuthConfigID: in.AuthConfigID,
	}, apierror.Options{NoRetry: true}}
}

// answerUnverifiable: the check cannot be completed for what this request
// asks; it is refused, never forwarded unchecked.
func answerUnverifiable(in guarded, reason string) answer {
	msg := "Composio refused the duplicate-connection check for this user and auth config, so the request was not sent."
	fix := "Check the user_id and auth_config_id: the proxy asks Composio for that user's accounts with them."
	switch reason {
	case ReasonTooManyAccounts:
		msg = fmt.Sprintf("User %q has more connected accounts on %s than the duplicate-connection check reads, so the request was not sent.",
			in.UserID, on(in))
		fix = "Remove the user's stale INITIATED or unused accounts, or " + optInFix + "."
	case ReasonUnknownItem:
		msg = "Composio listed a connected account the duplicate-connection check cannot read, so the request was not sent."
		fix = "Retry later; if it persists, " + optInFix + "."
	}
	return answer{apierror.Error{
		Message: msg, Code: apierror.CodeCheckNotPossible, Slug: apierror.SlugCheckNotPossible, Status: http.StatusUnprocessableEntity,
		SuggestedFix: fix, UserID: in.UserID, AuthConfigID: in.AuthConfigID,
	}, apierror.Options{NoRetry: true}}
}

// answerMaxAccounts: a session with multi-account on is at its cap of
// ACTIVE accounts for the toolkit.
func answerMaxAccounts(in guarded, active []string, maxAccounts int) answer {
	return answer{apierror.Error{
		Message: fmt.Sprintf("User %q already has %d ACTIVE connected accounts on %s, the session's max_accounts_per_toolkit (%d).",
			in.UserID, len(active), on(in), maxAccounts),
		Code: apierror.CodeMaxAccounts, Slug: apierror.SlugMaxAccounts, Status: http.StatusConflict,
		SuggestedFix:       "Use one of the existing accounts, raise multi_account.max_accounts_per_toolkit on the session, or " + optInFix + ".",
		ExistingAccountIDs: active, UserID: in.UserID, AuthConfigID: in.AuthConfigID,
	}, apierror.Options{NoRetry: true}}
}

// answerSessionUnreadable: the session names no user, so whose account a
// link would create is unknown.
func answerSessionUnreadable(id string) answer {
	return answer{apierror.Error{
		Message: fmt.Sprintf("The Tool Router session %q names no user, so the duplicate-connection check cannot run; the request was not sent.", id),
		Code:    apierror.CodeCheckNotPossible, Slug: apierror.SlugCheckNotPossible, Status: http.StatusUnprocessableEntity,
		SuggestedFix: "Create the session with a user id.",
	}, apierror.Options{NoRetry: true}}
}

// answerUnavailable: the check could not run (Composio or the lock store is
// failing) and the failure mode is closed. x-should-retry is not forced: the
// clients' own retry of a 503 is welcome.
func answerUnavailable(retryAfter int) answer {
	return answer{apierror.Error{
		Message: "The duplicate-connection check could not run, so the request was not sent to Composio.",
		Code:    apierror.CodeGuardUnavailable, Slug: apierror.SlugGuardUnavailable, Status: http.StatusServiceUnavailable,
		SuggestedFix: "Retry after the Retry-After delay.",
	}, apierror.Options{RetryAfterSeconds: retryAfter}}
}

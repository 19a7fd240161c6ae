// Package nodestate is the node-role state machine of DESIGN.md §2, written
// as data: Next maps a state and an event to the next state and does no I/O.
//
// Keeping the decision pure lets the scheduler, the API and restart recovery
// share one definition of what is legal, lets the table be tested
// exhaustively, and leaves the caller free to apply the result inside its own
// transaction (with a compare-and-swap on the old state, so two replicas
// cannot both act on one node-role).
//
// The diagram, with every transition labelled, is in README.md next to this
// file; a test keeps it in step with Next:
//
//	PROPOSED --Commit--> TODO | BLOCKED      BLOCKED --ParentsActive--> TODO
//	TODO --Start--> TRANSITION --Succeed--> ACTIVE
//	TRANSITION --Fail--> ERROR --Retry--> TODO
//	TRANSITION --Recover--> TODO (idempotent) | ERROR
//	ACTIVE --Reanneal--> TODO
//	TODO, ACTIVE, ERROR --ParentFailed, DescendantReanneal--> BLOCKED
//	TODO, BLOCKED, ACTIVE, ERROR --Propose--> PROPOSED
package nodestate

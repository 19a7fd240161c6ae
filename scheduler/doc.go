// Package scheduler is Prybar's annealer: it drives every node-role (a role bound to a machine in a
// deployment) through the state machine of DESIGN.md §2 until the graph is ACTIVE.
//
// It has two halves that share one state-change path (transition, built on nodestate.Next):
//
//   - The domain API (Annealer methods such as LoadRoles, BindRole, CommitDeployment,
//     SetAttribute, RetryNodeRole): what operators do, exposed by the GraphQL layer. Each call is
//     one st.Tx transaction, so every node-role state change is also a "noderole.state" event, and
//     each returns *domain.Error for input the domain refuses.
//   - The runner (Start): a gocron job sweeps every second (and at once when woken by a commit,
//     a retry or a finished run), claims runnable node-roles in batches with a compare-and-swap on
//     their state, runs them on a bounded pool through their executor, and records results in
//     batches. Only the leader runs it (scheduler/leader); recovery of node-roles left in
//     TRANSITION by a dead process runs before the first claim of every leadership term.
//
// docs/annealer.md describes the scheduling rules, recovery and leader election for operators.
package scheduler

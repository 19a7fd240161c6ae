// Package events is Prybar's change feed: a transactional outbox and the streams that read it.
//
// Every write goes through Tx. An ent hook records each mutation into a buffer held by the
// transaction's context; just before commit the buffer is appended to the events table in the
// same transaction, with seq = max(seq)+1 taken under a database-wide lock (SQLite: the writer
// lock, PostgreSQL: a transaction-scoped advisory lock). seq is therefore gapless and equals commit
// order, so a reader that has seen seq N and reads "seq > N" can never miss a later-visible
// smaller seq.
//
// Readers (GraphQL subscriptions, the events query) use Stream: read the table after a cursor, then
// wait for a poke. Local commits poke the Hub directly; with PostgreSQL, Listen turns NOTIFYs sent
// by other replicas into pokes. Replay and live delivery are one loop, so there is no switch-over
// to get wrong.
package events

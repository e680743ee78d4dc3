// Package agreements holds Clearance's policy: the registry of parties,
// datasets, purposes, agreements, adequacy decisions, consents, legal orders
// and erasures, and the pure decision engine that says whether one transfer
// request may go, why, under which Chapter V mechanism, and which fields may
// leave.
//
// Load (or Parse, from memory) reads a registry directory of strict YAML
// (DESIGN section 2): unknown keys, duplicate ids, dangling references,
// invalid country codes, enumerations and dates are *LoadError values that
// name file, line and key, all reported at once. New builds a Registry from
// a Content built in code (the database store uses it). A Registry is
// immutable and indexed once per version: every lookup of a decision is a
// map access or a scan of one party's own purposes, so a decision costs the
// same with 10 agreements as with 100,000. Registry.With derives the next
// version from live changes (consents, withdrawals, erasures, legal orders,
// suspensions) without reloading; Engine.Update swaps it in atomically.
//
// Engine.Decide applies the rules of DESIGN section 3 in order and collects
// every failing reason. Deny by default: anything the registry does not know
// is a denial. The broker, `clearance check` and the tests use the same
// engine. Engine.DecideInto makes the same decision into a Decision the
// caller reuses from one request to the next (one per worker): it allocates
// nothing once the Decision has grown to the size of the records, which
// spares a busy caller the allocation and garbage collection of the
// decision and its minimised record (BenchmarkDecide measures both ways).
//
// # Interpretations
//
// Where DESIGN leaves room, the engine does what a data-protection officer
// would expect; each point below is covered by a test.
//
//   - Time. A decision is made at the instant given (the broker's clock, or
//     --at for `clearance check`), in UTC. Dates (valid_from, valid_until,
//     review_by, legal order valid_until) are whole UTC days and inclusive:
//     an agreement valid until 2026-12-31 holds through 23:59:59 UTC that
//     day. Consents count from granted_at and stop at withdrawn_at;
//     erasures take effect at their at. A check "as of" a past instant
//     therefore reproduces the decision of that instant.
//   - Erasure (rule 1) applies to every request naming the subject, also
//     alongside other reasons; it is never overridden, not even by a legal
//     order (the order's authority must then be served outside Clearance,
//     with review).
//   - Non-personal datasets (rule 2) need a known recipient and purpose and
//     then pass with every field, mechanism "none" and no agreement; the
//     subject is still checked for erasure. The request format always
//     carries a subject. Kept lists the record's members by name, a name
//     that is not plain as WithheldName, as removed fields are named.
//   - Consent (rule 3). A consent matches when it covers the subject and
//     purpose, was granted by the decision time and names the recipient or
//     no recipient. One unwithdrawn match suffices. When every match is
//     withdrawn the reason is consent_withdrawn; with no match at all it is
//     no_consent. For a minor, a match without parental: true gives
//     minor_without_parental_consent (not no_consent), which is reported
//     only when no parental match exists. Art. 8 is applied to the consent
//     basis only, as DESIGN says; other bases are carried by the agreement.
//   - Legal orders (rule 3) are used only for purposes with the
//     legal_obligation basis: the request must name the order, the order's
//     authority must be the recipient, its subjects must include the
//     subject, and it must be valid at the decision time. Such an order then
//     replaces the agreement of rule 4 and its categories bound
//     minimisation. A request naming an order for another basis is decided
//     as if it named none. Without a valid order, rule 4 still applies and
//     reports its own reason (usually no_agreement), because nothing else
//     carries the disclosure.
//   - Agreements (rule 4). An agreement is in force when it is active and
//     the decision time lies in [valid_from, valid_until]. Among those
//     listing recipient and purpose but not in force, the most specific
//     reason wins: agreement_expired (past valid_until, or terminated),
//     then agreement_not_yet_valid (before valid_from, or still a draft),
//     then agreement_suspended; the decision names that agreement. Otherwise
//     purpose_not_covered when some agreement lists the recipient, else
//     no_agreement. With several agreements in force, a contract about the
//     disclosure (dpa, data_sharing, intra_group) is preferred to a transfer
//     mechanism (scc, bcr), then the higher version, then the smaller id.
//   - Minimisation (rule 5). Field paths are dotted JSON paths through
//     objects; a member written with dots ("payment.method") matches the
//     same path, and ParseRequest refuses a record that gives one path
//     both ways. A classified path keeps its whole value (an object or a
//     list); an unclassified member is removed whole, reported by its path.
//     A category is dot-separated segments of lower-case ASCII letters,
//     digits, _ and -, each starting with a letter or a digit, so that it
//     has one spelling. Categories in agreements and legal orders are exact
//     names, prefix patterns such as "contact.*", or "*"; special and
//     special.* (Art. 9) categories match only when listed by name, and
//     "special.*" is a lint error. When
//     no agreement or legal order is in force, nothing is kept and every
//     field is reported removed, without no_permitted_fields (the reason of
//     rule 4 already says why). A dataset may not classify both an object
//     and a path inside it.
//   - Transfers (rule 6) are checked whenever recipient, purpose and
//     dataset are known, also when earlier rules failed, so that a
//     compliance team sees every gap at once; the mechanism found is
//     reported even on a denial. Same country, or two countries sharing a
//     zone, is domestic. An authority in another country is never served
//     automatically (foreign_authority_requires_review), whatever adequacy,
//     SCC or consent exists. SCC and BCR agreements hold when in force,
//     listing recipient, purpose and destination (zones expanded); a TIA
//     past its review_by day makes that agreement not hold, and the
//     decision reports tia_overdue only when no other mechanism holds. The
//     explicit-consent derogation needs an unwithdrawn consent with
//     transfer_consent: true for subject, purpose and recipient and, for a
//     minor, parental: true.
//   - Lint adds checks a DPO expects: dpf_certified only for US parties, an
//     SCC has a module and a TIA, only SCC and BCR agreements have
//     destinations, a transfer consent records its notice_version, a legal
//     order's authority has the authority role, agreement categories are
//     used by some dataset.
//
// Errors and messages never quote subject ids or record values.
package agreements

package agreements

// MechanismGap is what a disclosure agreement lets a party receive for a
// purpose beyond what a transfer mechanism for the same party, its country
// and that purpose lists. Rule 6 picks the mechanism by recipient,
// destination and purpose, and minimisation keeps what the disclosure
// agreement (rule 4 prefers it) permits: where the mechanism carries the
// transfer (no adequacy decision from the subject's jurisdiction), these
// categories go abroad under standard contractual clauses or binding
// corporate rules whose annex does not name them. Decisions do not change;
// `clearance registry lint` and `registry apply` warn of each gap, for the
// agreements to be brought in line.
type MechanismGap struct {
	// Agreement is the disclosure agreement (dpa, data_sharing,
	// intra_group).
	Agreement *Agreement
	// Mechanism is the scc or bcr agreement.
	Mechanism *Agreement
	Party     string
	Country   string
	Purpose   string
	// Categories are the datasets' categories Agreement permits and
	// Mechanism does not, sorted.
	Categories []string
}

// MechanismGaps returns every MechanismGap of the registry, by party in
// the order of the registry's parties, then by purpose. Terminated
// agreements are left out; others are taken whatever their dates and
// status, which the date warnings (Agreement.Warnings) speak of.
func (r *Registry) MechanismGaps() []MechanismGap {
	var out []MechanismGap
	for i := range r.content.Parties {
		pi := r.parties[r.content.Parties[i].ID]
		if pi == nil {
			continue
		}
		dest := countryIndex(pi.p.Country)
		for _, pa := range pi.byPurpose {
			for _, d := range pa.agreements {
				if d.mechanism != "" || d.a.Status == StatusTerminated {
					continue
				}
				for _, m := range pa.agreements {
					if m.mechanism == "" || m.a.Status == StatusTerminated || !m.dest.has(dest) {
						continue
					}
					var cats []string
					for id, c := range r.categories {
						if d.scope.cats.has(id) && !m.scope.cats.has(id) {
							cats = append(cats, c)
						}
					}
					if len(cats) > 0 {
						out = append(out, MechanismGap{Agreement: d.a, Mechanism: m.a, Party: pi.p.ID,
							Country: pi.p.Country, Purpose: pa.purpose, Categories: cats})
					}
				}
			}
		}
	}
	return out
}

//! Choosing among candidates: the narrowest rung that blocks the breach with the least blast
//! radius. Pure: no I/O.

use crate::plan::Candidate;

/// Picks the chosen candidate and annotates every other one with why it was rejected.
///
/// Order of preference among candidates that block and were not ruled out by their control
/// plane: fewest in-envelope behaviours broken, then fewest undetermined, then narrowest rung.
pub fn choose(mut candidates: Vec<Candidate>) -> (Option<Candidate>, Vec<Candidate>) {
    candidates.sort_by_key(|c| c.rung);
    let best = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.blocks && c.rejected.is_none())
        .min_by_key(|(_, c)| {
            (
                c.blast_radius.broken,
                c.blast_radius.undetermined.len(),
                c.rung,
            )
        })
        .map(|(i, _)| i);
    let Some(best) = best else {
        for c in &mut candidates {
            if c.rejected.is_none() {
                c.rejected = Some("does not block the breached parameter".into());
            }
        }
        return (None, candidates);
    };
    let chosen = candidates[best].clone();
    for (i, c) in candidates.iter_mut().enumerate() {
        if i == best || c.rejected.is_some() {
            continue;
        }
        c.rejected = Some(rejection(c, &chosen));
    }
    (Some(chosen), candidates)
}

fn rejection(c: &Candidate, chosen: &Candidate) -> String {
    if !c.blocks {
        return "does not block the breached parameter".into();
    }
    let (mine, theirs) = (c.blast_radius.broken, chosen.blast_radius.broken);
    if mine > theirs {
        return format!(
            "breaks {mine} in-envelope behaviour(s) ({}); {} breaks {theirs}",
            c.blast_radius.items.join(", "),
            chosen.kind
        );
    }
    if c.blast_radius.undetermined.len() > chosen.blast_radius.undetermined.len() {
        return format!(
            "its effect on {} in-envelope behaviour(s) cannot be determined ({})",
            c.blast_radius.undetermined.len(),
            c.blast_radius.undetermined.join(", ")
        );
    }
    if c.rung > chosen.rung {
        return format!(
            "same blast radius ({theirs}) but broader than {}: it also removes what the envelope does not need to lose",
            chosen.kind
        );
    }
    format!("{} is narrower", chosen.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sample_candidate;
    use crate::plane::KindSpec;
    use crate::testing::{BROADEST, NARROW, WIDE};

    fn candidate(kind: &'static KindSpec, broken: usize, blocks: bool) -> Candidate {
        Candidate {
            blocks,
            ..sample_candidate(kind, broken)
        }
    }

    #[test]
    fn narrowest_zero_blast_wins_and_others_say_why() {
        let (chosen, all) = choose(vec![
            candidate(&WIDE, 0, true),
            candidate(&NARROW, 0, true),
            candidate(&BROADEST, 3, true),
        ]);
        assert_eq!(chosen.map(|c| c.kind), Some(NARROW.kind()));
        let detach = all.iter().find(|c| c.kind == WIDE);
        assert!(detach
            .and_then(|c| c.rejected.as_deref())
            .is_some_and(|r| r.contains("broader")));
        let trust = all.iter().find(|c| c.kind == BROADEST);
        assert!(trust
            .and_then(|c| c.rejected.as_deref())
            .is_some_and(|r| r.contains("breaks 3")));
    }

    #[test]
    fn smaller_blast_beats_narrower_rung() {
        let (chosen, _) = choose(vec![candidate(&NARROW, 2, true), candidate(&WIDE, 0, true)]);
        assert_eq!(chosen.map(|c| c.kind), Some(WIDE.kind()));
    }

    #[test]
    fn non_blocking_candidates_are_never_chosen() {
        let (chosen, all) = choose(vec![candidate(&WIDE, 0, false)]);
        assert!(chosen.is_none());
        assert!(all[0].rejected.is_some());
    }

    #[test]
    fn a_plane_rejection_is_kept() {
        let mut ruled_out = candidate(&NARROW, 0, true);
        ruled_out.rejected = Some("inline policy budget exceeded".into());
        let (chosen, all) = choose(vec![ruled_out, candidate(&WIDE, 1, true)]);
        assert_eq!(chosen.map(|c| c.kind), Some(WIDE.kind()));
        assert_eq!(
            all[0].rejected.as_deref(),
            Some("inline policy budget exceeded")
        );
    }
}

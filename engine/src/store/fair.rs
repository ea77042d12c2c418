//! How a claim shares its slots among tenants, for every backend: round by
//! round, each tenant with due tasks and free running slots asks for an
//! equal share of what is left; a tenant that gets less than it asked has
//! no more due tasks and drops out.

/// The plan of one claim.
pub(crate) struct FairShares {
    /// Each tenant's free running slots (0: out of this claim).
    tenants: Vec<(String, usize)>,
    left: usize,
    progress: bool,
}

impl FairShares {
    /// A claim of up to `limit` tasks among `tenants` (with their free slots).
    pub(crate) fn new(tenants: Vec<(String, usize)>, limit: usize) -> Self {
        Self { tenants, left: limit, progress: true }
    }

    /// The next round's asks, `(tenant index, how many)`; `None` when the
    /// claim is done.
    pub(crate) fn round(&mut self) -> Option<Vec<(usize, usize)>> {
        let active = self.tenants.iter().filter(|(_, slots)| *slots > 0).count();
        if active == 0 || self.left == 0 || !self.progress {
            return None;
        }
        self.progress = false;
        let share = self.left.div_ceil(active);
        let mut budget = self.left;
        let mut asks = Vec::new();
        for (i, (_, slots)) in self.tenants.iter().enumerate() {
            let want = share.min(*slots).min(budget);
            if want > 0 {
                asks.push((i, want));
                budget -= want;
            }
        }
        Some(asks)
    }

    /// The tenant at `index`.
    pub(crate) fn tenant(&self, index: usize) -> &str {
        &self.tenants[index].0
    }

    /// Records that tenant `index` asked for `want` and got `got`.
    pub(crate) fn got(&mut self, index: usize, want: usize, got: usize) {
        let slots = &mut self.tenants[index].1;
        *slots = if got < want { 0 } else { *slots - got };
        self.left -= got;
        self.progress |= got > 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a plan against tenants with `due` tasks each.
    fn claim(due: &[(&str, usize, usize)], limit: usize) -> Vec<(String, usize)> {
        let mut left: Vec<usize> = due.iter().map(|d| d.1).collect();
        let tenants = due.iter().map(|(t, _, slots)| (t.to_string(), *slots)).collect();
        let mut plan = FairShares::new(tenants, limit);
        let mut claimed = vec![0; due.len()];
        while let Some(asks) = plan.round() {
            for (i, want) in asks {
                let got = want.min(left[i]);
                left[i] -= got;
                claimed[i] += got;
                plan.got(i, want, got);
            }
        }
        due.iter().zip(claimed).map(|(d, n)| (d.0.to_string(), n)).collect()
    }

    #[test]
    fn a_flood_gets_no_more_than_its_share() {
        let got = claim(&[("heavy", 10_000, 100), ("light", 3, 100)], 10);
        assert_eq!(got, vec![("heavy".into(), 7), ("light".into(), 3)]);
    }

    #[test]
    fn slots_bound_a_tenant_and_the_rest_goes_to_others() {
        let got = claim(&[("a", 100, 2), ("b", 100, 100)], 10);
        assert_eq!(got, vec![("a".into(), 2), ("b".into(), 8)]);
    }

    #[test]
    fn nothing_due_claims_nothing() {
        assert_eq!(claim(&[("a", 0, 10)], 10), vec![("a".into(), 0)]);
    }
}

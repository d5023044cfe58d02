//! Seeded random traffic for the ledger: the same seed always gives the same inputs.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::ledger::LedgerInput;

/// Inputs between audits.
pub const AUDIT_EVERY: u64 = 20_000;

/// An endless, deterministic stream of ledger inputs.
pub struct Traffic {
    rng: Pcg64Mcg,
    opened: u64,
    produced: u64,
}

impl Traffic {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Traffic {
        Traffic {
            rng: Pcg64Mcg::seed_from_u64(seed),
            opened: 0,
            produced: 0,
        }
    }

    fn account(&mut self) -> u16 {
        // Clients only name accounts the ledger told them about, and ids are 16-bit.
        self.rng.gen_range(0..self.opened.min(1 << 16)) as u16
    }
}

impl Iterator for Traffic {
    type Item = LedgerInput;

    fn next(&mut self) -> Option<LedgerInput> {
        self.produced += 1;
        if self.produced % AUDIT_EVERY == 0 {
            return Some(LedgerInput::Audit);
        }
        let roll = if self.opened == 0 {
            0
        } else {
            self.rng.gen_range(0..100)
        };
        Some(match roll {
            0..18 => {
                self.opened += 1;
                LedgerInput::Open {
                    deposit: self.rng.gen_range(0..50_000),
                }
            }
            18..50 => LedgerInput::Deposit {
                account: self.account(),
                amount: self.rng.gen_range(1..20_000),
            },
            50..70 => LedgerInput::Withdraw {
                account: self.account(),
                amount: self.rng.gen_range(1..30_000),
            },
            _ => LedgerInput::Transfer {
                from: self.account(),
                to: self.account(),
                amount: self.rng.gen_range(1..25_000),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let a: Vec<_> = Traffic::new(7).take(1000).collect();
        let b: Vec<_> = Traffic::new(7).take(1000).collect();
        let c: Vec<_> = Traffic::new(8).take(1000).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

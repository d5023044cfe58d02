//! The demo's machine: an account ledger with a latent bug.
//!
//! Account ids are `u16`. After 65,536 accounts have been opened, the next id wraps to 0 and the
//! new account silently replaces account 0, destroying its balance. Nothing fails at that
//! moment; the books no longer balance, and the periodic audit panics some inputs later. Replay
//! finds the input that first broke the invariant.

use serde::{Deserialize, Serialize};

use flightrec_schemas::{Machine, Tick};

/// One account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Balance in cents.
    pub balance: u64,
    /// Inputs that touched it.
    pub operations: u32,
}

/// An input of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerInput {
    /// Open an account with an initial deposit.
    Open {
        /// Initial deposit in cents.
        deposit: u64,
    },
    /// Add money to an account.
    Deposit {
        /// Account id.
        account: u16,
        /// Cents.
        amount: u64,
    },
    /// Take money out of an account, if it holds enough.
    Withdraw {
        /// Account id.
        account: u16,
        /// Cents.
        amount: u64,
    },
    /// Move money between accounts, charging a fee to the sender.
    Transfer {
        /// Paying account.
        from: u16,
        /// Receiving account.
        to: u16,
        /// Cents.
        amount: u64,
    },
    /// Check that the books balance; panics if they do not.
    Audit,
}

/// The ledger's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Accounts by id.
    pub accounts: Vec<Account>,
    /// Sum of all deposits, including opening deposits.
    pub deposited: u64,
    /// Sum of all withdrawals.
    pub withdrawn: u64,
    /// Fees collected on transfers.
    pub fees: u64,
    /// Requests refused for lack of funds.
    pub refused: u64,
}

/// Fee on transfers, in basis points.
pub const FEE_BPS: u64 = 25;

impl Ledger {
    /// Money the ledger holds according to its accounts and fees.
    pub fn held(&self) -> u64 {
        self.accounts.iter().map(|a| a.balance).sum::<u64>() + self.fees
    }

    /// Money that should be there according to the flows in and out.
    pub fn expected(&self) -> u64 {
        self.deposited - self.withdrawn
    }

    /// The invariant: every cent is accounted for.
    pub fn balanced(&self) -> bool {
        self.held() == self.expected()
    }

    fn account(&mut self, id: u16) -> Option<&mut Account> {
        self.accounts.get_mut(id as usize)
    }

    fn open(&mut self, deposit: u64) {
        // The latent bug: ids are u16, so the 65,537th account gets id 0 and overwrites it.
        let id = self.accounts.len() as u16;
        let account = Account {
            balance: deposit,
            operations: 1,
        };
        match self.accounts.get_mut(id as usize) {
            Some(existing) => *existing = account,
            None => self.accounts.push(account),
        }
        self.deposited += deposit;
    }

    fn transfer(&mut self, from: u16, to: u16, amount: u64) {
        let fee = amount * FEE_BPS / 10_000;
        let Some(payer) = self.account(from).filter(|a| a.balance >= amount + fee) else {
            self.refused += 1;
            return;
        };
        payer.balance -= amount + fee;
        payer.operations += 1;
        let payee = self.account(to).expect("transfers name open accounts");
        payee.balance += amount;
        payee.operations += 1;
        self.fees += fee;
    }
}

impl Machine for Ledger {
    const NAME: &'static str = "ledger";
    const VERSION: u32 = 1;
    type Input = LedgerInput;

    fn apply(&mut self, input: &LedgerInput, tick: Tick) {
        match *input {
            LedgerInput::Open { deposit } => self.open(deposit),
            LedgerInput::Deposit { account, amount } => {
                if let Some(a) = self.account(account) {
                    a.balance += amount;
                    a.operations += 1;
                    self.deposited += amount;
                }
            }
            LedgerInput::Withdraw { account, amount } => match self.account(account) {
                Some(a) if a.balance >= amount => {
                    a.balance -= amount;
                    a.operations += 1;
                    self.withdrawn += amount;
                }
                _ => self.refused += 1,
            },
            LedgerInput::Transfer { from, to, amount } => self.transfer(from, to, amount),
            LedgerInput::Audit => {
                let (held, expected) = (self.held(), self.expected());
                assert!(
                    held == expected,
                    "audit failed at input {}: the ledger holds {held} cents but deposits minus withdrawals are {expected} ({} cents unaccounted for)",
                    tick.seq,
                    expected.abs_diff(held),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(seq: u64) -> Tick {
        Tick { seq, unix_ns: seq }
    }

    #[test]
    fn transfers_conserve_money_and_charge_fees() {
        let mut ledger = Ledger::default();
        ledger.apply(&LedgerInput::Open { deposit: 100_000 }, tick(0));
        ledger.apply(&LedgerInput::Open { deposit: 0 }, tick(1));
        ledger.apply(
            &LedgerInput::Transfer {
                from: 0,
                to: 1,
                amount: 40_000,
            },
            tick(2),
        );
        assert_eq!(ledger.accounts[1].balance, 40_000);
        assert_eq!(ledger.fees, 100);
        assert!(ledger.balanced());
        ledger.apply(&LedgerInput::Audit, tick(3));
    }

    #[test]
    fn the_65537th_account_overwrites_account_zero() {
        let mut ledger = Ledger::default();
        for i in 0..=65_536u64 {
            ledger.apply(&LedgerInput::Open { deposit: 10 }, tick(i));
            assert_eq!(ledger.balanced(), i < 65_536, "after open {i}");
        }
    }
}

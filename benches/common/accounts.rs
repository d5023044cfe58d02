//! The machine the replay and export benchmarks share: a small account map of 256 balances
//! and a few counters, fed 32-byte plain-old-data transfers (deposit, transfer with a fee, or
//! withdrawal) on the zero-copy codec path, from a seeded RNG.

use bytemuck::{Pod, Zeroable};
use flightrec_recorder::{Machine, Tick};
use flightrec_schemas::codec::{pod_decode, pod_encode, pod_inline};
use flightrec_schemas::slot::InlineRecord;
use flightrec_schemas::CodecError;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

/// Accounts in the machine.
pub const ACCOUNTS: usize = 256;
/// Every account's balance in a fresh machine.
pub const OPENING_BALANCE: i64 = 1_000_000;

pub const DEPOSIT: u32 = 0;
pub const TRANSFER: u32 = 1;
pub const WITHDRAW: u32 = 2;

/// A 32-byte input, recorded as its raw bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, Serialize, Deserialize)]
pub struct Transfer {
    pub id: u64,
    pub amount: u64,
    pub from: u32,
    pub to: u32,
    pub kind: u32,
    pub fee: u32,
}

/// A small account map: balances and a few counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accounts {
    pub balances: Vec<i64>,
    pub applied: u64,
    pub rejected: u64,
    pub fees: u64,
    pub last_id: u64,
    pub last_unix_ns: u64,
}

impl Accounts {
    pub fn new() -> Accounts {
        Accounts {
            balances: vec![OPENING_BALANCE; ACCOUNTS],
            applied: 0,
            rejected: 0,
            fees: 0,
            last_id: 0,
            last_unix_ns: 0,
        }
    }

    /// Moves `amount` (plus `fee`, kept by the house) from `from` to `to`; false if refused.
    fn transfer(&mut self, from: usize, to: usize, amount: i64, fee: i64) -> bool {
        if from == to || to >= self.balances.len() {
            return false;
        }
        match self.balances.get_mut(from) {
            Some(balance) if *balance >= amount + fee => *balance -= amount + fee,
            _ => return false,
        }
        self.balances[to] += amount;
        self.fees += fee as u64;
        true
    }
}

impl Machine for Accounts {
    const NAME: &'static str = "bench-accounts";
    const VERSION: u32 = 1;
    type Input = Transfer;

    fn apply(&mut self, input: &Transfer, tick: Tick) {
        self.applied += 1;
        self.last_id = input.id;
        self.last_unix_ns = tick.unix_ns;
        let amount = input.amount as i64;
        let accepted = match input.kind {
            DEPOSIT => match self.balances.get_mut(input.to as usize) {
                Some(balance) => {
                    *balance += amount;
                    true
                }
                None => false,
            },
            TRANSFER => self.transfer(
                input.from as usize,
                input.to as usize,
                amount,
                input.fee as i64,
            ),
            WITHDRAW => match self.balances.get_mut(input.from as usize) {
                Some(balance) if *balance >= amount => {
                    *balance -= amount;
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !accepted {
            self.rejected += 1;
        }
    }

    fn encode_input(input: &Transfer, out: &mut Vec<u8>) -> Result<(), CodecError> {
        pod_encode(input, out)
    }

    fn encode_input_inline(input: &Transfer) -> Option<InlineRecord> {
        Some(pod_inline(input))
    }

    fn decode_input(bytes: &[u8]) -> Result<Transfer, CodecError> {
        pod_decode(bytes)
    }
}

/// Seeded random traffic: mostly transfers, some deposits and withdrawals.
pub struct Traffic {
    rng: Pcg64Mcg,
    next_id: u64,
}

impl Traffic {
    pub fn new(seed: u64) -> Traffic {
        Traffic {
            rng: Pcg64Mcg::seed_from_u64(seed),
            next_id: 1,
        }
    }

    pub fn next(&mut self) -> Transfer {
        let roll = self.rng.gen_range(0..100u32);
        let kind = match roll {
            0..=9 => DEPOSIT,
            10..=94 => TRANSFER,
            _ => WITHDRAW,
        };
        let id = self.next_id;
        self.next_id += 1;
        Transfer {
            id,
            amount: self.rng.gen_range(1..5_000),
            from: self.rng.gen_range(0..ACCOUNTS as u32),
            to: self.rng.gen_range(0..ACCOUNTS as u32),
            kind,
            fee: self.rng.gen_range(0..10),
        }
    }
}

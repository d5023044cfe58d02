//! The zero-copy input path records exactly the bytes that decoding expects.

use flightrec_recorder::{Builder, Machine, Tick};
use flightrec_replayer::{recover_lane, Ring};
use flightrec_schemas::codec::{pod_decode, pod_encode, pod_inline};
use flightrec_schemas::slot::InlineRecord;
use flightrec_schemas::CodecError;
use serde::{Deserialize, Serialize};

#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable, Serialize, Deserialize,
)]
struct Quote {
    price: u64,
    size: u32,
    venue: u16,
    flags: u16,
    ts: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct Tape {
    volume: u64,
}

impl Machine for Tape {
    const NAME: &'static str = "tape";
    const VERSION: u32 = 1;
    type Input = Quote;
    fn apply(&mut self, input: &Quote, _tick: Tick) {
        self.volume += input.size as u64;
    }
    fn encode_input(input: &Quote, out: &mut Vec<u8>) -> Result<(), CodecError> {
        pod_encode(input, out)
    }
    fn encode_input_inline(input: &Quote) -> Option<InlineRecord> {
        Some(pod_inline(input))
    }
    fn decode_input(bytes: &[u8]) -> Result<Quote, CodecError> {
        pod_decode(bytes)
    }
}

#[test]
fn inline_inputs_decode_to_what_was_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorded = Builder::new()
        .dir(dir.path())
        .input_lane_bytes(64 << 10)
        .crash_capture(false)
        .build(Tape::default())
        .unwrap();
    let quotes: Vec<Quote> = (0..5_000u64)
        .map(|i| Quote {
            price: i * 3,
            size: i as u32,
            venue: (i % 7) as u16,
            flags: 1,
            ts: !i,
        })
        .collect();
    for quote in &quotes {
        recorded.apply(quote);
    }
    let path = recorded.finish();
    let ring = Ring::open(&path).unwrap();
    let lane = recover_lane(&ring, &ring.header().lanes[0]);
    assert_eq!(lane.recorded, 5_000);
    assert!(
        lane.retained() >= 1_000,
        "a 64 KiB lane keeps at least 1,000 single-slot inputs"
    );
    for record in &lane {
        let quote = Tape::decode_input(record.payload).unwrap();
        assert_eq!(quote, quotes[record.seq as usize]);
    }
}

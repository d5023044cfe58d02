# The messages of an export (`.flightrec`): one self-contained file holding a replayed history.
#
# The file's framing (header, LZ4-compressed chunks, footer, trailer) is described in
# schemas/EXPORT.md; every chunk holds one message whose root is `EventChunk`, `DiffChunk`,
# `Keyframe` or `Checkpoint` (its kind is in the index), and the footer holds one `Index`.
#
# The Rust code generated from this file is checked in as schemas/src/trace_capnp.rs, so a build
# needs no `capnp` binary; schemas/tests/capnp_generated.rs checks that the two agree (and
# regenerates the Rust file with FLIGHTREC_REGENERATE_CAPNP=1). Change both together.
#
# Conventions: a Text field holding JSON is one value in serde_json's syntax. An absent pointer
# field (a null Text) means "none", as an Option's None; an empty Text is a present empty string.
# Unix times are nanoseconds since the epoch; 0 means unknown.

@0xd5dc41fb71c04849;

# ---------------------------------------------------------------------------------------------
# What was recorded, and what became of the recording process

struct Metadata {
  formatVersion @0 :UInt32;        # the export's format version (also in the file header)
  ringFormatVersion @1 :UInt32;    # format version of the ring file it was made from; 0 if none
  machineName @2 :Text;            # the recorded machine's name ...
  machineVersion @3 :UInt32;       # ... and version
  host @4 :Text;                   # where it was recorded
  pid @5 :UInt32;                  # the recording process
  recordStartUnixNs @6 :UInt64;    # when the ring file was created
  recordEndUnixNs @7 :UInt64;      # when the recording ended (exit or crash); 0 if unknown
  exportedUnixNs @8 :UInt64;       # when this export was written
  status @9 :Text;                # "running", "exited", "crashed", "died", ...
  causeOfDeath @10 :Text;          # one line for people; null if the process did not die
  crash @11 :Crash;                # the crash record, structured; null if none was written
  losses @12 :List(Counter);       # what the recording lost: name and count
  verification @13 :Text;          # the replay's verification result, one line
  baseSeq @14 :UInt64;             # input sequence number of position 0
  keyframeInterval @15 :UInt32;    # inputs between keyframes, as the writer intended; 0 unknown
  replayPanics @16 :List(ReplayPanic); # inputs whose `apply` panicked when the history was
                                   # replayed (the recorded crash, replayed): the first ones
  replayPanicCount @17 :UInt64;    # how many panicked in all (replayPanics may hold fewer)
}

# An input whose `apply` panicked during the replay the export was written from.
struct ReplayPanic {
  position @0 :UInt64;             # the input's position
  seq @1 :UInt64;                  # its sequence number
  message @2 :Text;                # the panic message
  location @3 :Text;               # file:line:column; null if unknown
}

struct Crash {
  kind @0 :Text;                   # "panic", "signal", ...
  signal @1 :Int32;                # the fatal signal's number; 0 if none
  hasCode @2 :Bool;                # whether `code` holds a signal code (si_code)
  code @3 :Int32;
  faultAddr @4 :Text;              # null if none
  location @5 :Text;               # file:line:column of a panic; null if unknown
  message @6 :Text;
  thread @7 :Text;
  tid @8 :UInt32;
  timeUnixNs @9 :UInt64;
}

struct Counter {
  name @0 :Text;
  value @1 :UInt64;
}

# ---------------------------------------------------------------------------------------------
# The timeline: inputs, and trace events placed among them

enum EventKind {
  input @0;                        # applied to the machine
  trace @1;                        # a log line or span edge from some thread; never applied
}

# What a trace event marks (`flightrec_schemas::trace::TraceKind`).
enum TraceKind {
  event @0;                        # a point event (a log line)
  spanEnter @1;                    # a span was entered; the summary is its name
  spanExit @2;                     # a span was exited; the summary is its name
  thread @3;                       # a thread took the lane; the summary is its name
}

struct Event {
  kind @0 :EventKind;
  # For an input: its position (0 is the first input of the history). For a trace event: the
  # number of inputs before it, so it follows the input at `position - 1`. Events are stored in
  # timeline order: positions never decrease, and an input is the last event of its position.
  position @1 :UInt64;
  seq @2 :UInt64;                  # sequence number in its lane
  unixNs @3 :UInt64;
  name @4 :UInt32;                 # the lane's (inputs) or thread's (traces) name: index into Index.names
  level @5 :UInt8;                 # trace level, 1 error .. 5 trace; 0 for inputs and for
                                   # trace records that did not decode
  summary @6 :Text;                # inputs: one line, as a timeline shows it; trace events: the
                                   # message (a span's or thread's name), or for an undecodable
                                   # record (level 0) why it did not decode
  tree @7 :Text;                   # inputs: the input as a JSON tree; null for traces
  raw @8 :Data;                    # inputs: the input as the machine encodes it; null if not kept
  traceKind @9 :TraceKind;         # trace events: what the event marks; `event` for inputs
}

struct EventChunk {
  firstEvent @0 :UInt64;           # index of events[0] among all events of the file
  events @1 :List(Event);
}

# ---------------------------------------------------------------------------------------------
# States: keyframes and per-input diffs

# The state after the input at `position`, as a JSON tree.
struct Keyframe {
  position @0 :UInt64;
  tree @1 :Text;
}

# One change: the value at `path` before and after. `path` is written as the replayer's
# `tree::Path` displays it (`accounts[3].balance`, `peers["10.0.0.1"]`), the root as "".
# `before` is null where the path did not exist, `after` where it no longer exists.
struct Change {
  path @0 :Text;
  before @1 :Text;
  after @2 :Text;
}

# What the input at `position` changed, every change, in the order `tree::diff` gives them.
struct Diff {
  position @0 :UInt64;
  changes @1 :List(Change);
}

struct DiffChunk {
  diffs @0 :List(Diff);            # positions strictly increasing
}

# ---------------------------------------------------------------------------------------------
# Checkpoints, so that the service's own binary can re-execute the inputs

struct Checkpoint {
  inputSeq @0 :UInt64;             # sequence number of the first input not yet applied to it
  hash @1 :UInt64;                 # the hash recorded with it (xxh3_64 of `state`)
  unixNs @2 :UInt64;
  state @3 :Data;                  # the state as the machine encodes it
}

# ---------------------------------------------------------------------------------------------
# The footer: metadata and where everything is

enum ChunkKind {
  events @0;
  diffs @1;
  keyframe @2;
  checkpoint @3;
}

struct ChunkRef {
  kind @0 :ChunkKind;
  offset @1 :UInt64;               # of the chunk's 24-byte frame header
  storedLen @2 :UInt32;            # LZ4 block bytes after the frame header
  rawLen @3 :UInt32;               # bytes of the message once decompressed
  checksum @4 :UInt64;             # xxh3_64 of the stored (compressed) bytes
  firstPosition @5 :UInt64;        # events, diffs, keyframe: position of the first record
  lastPosition @6 :UInt64;         # events, diffs: position of the last record (inclusive)
  firstEvent @7 :UInt64;           # events: index of the first event
  count @8 :UInt32;                # records in the chunk (1 for a keyframe or checkpoint)
}

struct KeyframeRef {
  position @0 :UInt64;
  chunk @1 :UInt32;                # index into Index.chunks
}

struct CheckpointRef {
  inputSeq @0 :UInt64;
  hash @1 :UInt64;
  unixNs @2 :UInt64;
  stateLen @3 :UInt64;
  chunk @4 :UInt32;                # index into Index.chunks
}

struct Index {
  metadata @0 :Metadata;
  names @1 :List(Text);            # lane and thread names, referred to by Event.name
  inputCount @2 :UInt64;           # positions 0 .. inputCount - 1
  eventCount @3 :UInt64;           # inputs and trace events
  chunks @4 :List(ChunkRef);       # in file order
  keyframes @5 :List(KeyframeRef); # positions strictly increasing
  checkpoints @6 :List(CheckpointRef);
}

//! The store as its users meet it: `kvstore serve` on a free port with its ring file in a
//! temporary directory, clients over TCP, the INCR that overflows, and then `kvstore flightrec
//! verify / replay / inspect / export` on what the crash left, with the connection threads'
//! `tracing` events in the export.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use flightrec::schemas::trace::TraceKind;
use flightrec_replayer::export::{EventKind, Export};
use serde_json::{json, Value};

/// Clients writing at once.
const CLIENTS: usize = 4;
/// INCRs of the shared counter per client.
const HITS: usize = 5;

/// A running `kvstore serve`, killed when dropped unless it has already died.
struct Server {
    child: Child,
    address: String,
    ring: PathBuf,
}

impl Server {
    /// Starts the store on a free port, recording into `dir/kv.ring` with a checkpoint every
    /// `checkpoint_every` writes, and waits for the line that says where it listens.
    fn start(dir: &Path, checkpoint_every: u32) -> Server {
        let ring = dir.join("kv.ring");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kvstore"))
            .args(["serve", "--port", "0"])
            .env("FLIGHTREC_PATH", &ring)
            .env_remove("FLIGHTREC_DIR")
            .env("FLIGHTREC_INPUT_LANE_BYTES", "256K")
            .env("FLIGHTREC_TRACE_LANE_BYTES", "64K")
            .env("FLIGHTREC_STATE_CAPACITY", "64K")
            .env("FLIGHTREC_CHECKPOINT_INPUTS", checkpoint_every.to_string())
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kvstore serve");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut first).unwrap();
        let address = first
            .split_whitespace()
            .find(|word| word.starts_with("127.0.0.1:"))
            .map(|word| word.trim_end_matches(',').to_owned());
        let server = Server {
            child,
            address: address.unwrap_or_default(),
            ring,
        };
        if server.address.is_empty() {
            let (stderr, code) = server.wait();
            panic!("kvstore serve printed {first:?} and exited with {code:?}: {stderr}");
        }
        server
    }

    /// Waits for the process to end and returns its stderr and exit code.
    fn wait(mut self) -> (String, Option<i32>) {
        let mut stderr = String::new();
        let mut pipe = self.child.stderr.take().expect("piped stderr");
        std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
        let status = self.child.wait().unwrap();
        (stderr, status.code())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection, one request at a time.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(address: &str) -> Client {
        let writer = TcpStream::connect(address).expect("connect to kvstore");
        let reader = BufReader::new(writer.try_clone().unwrap());
        Client { reader, writer }
    }

    /// Sends `line` and returns the reply, or `None` when the server closed the connection.
    fn send(&mut self, line: impl AsRef<[u8]>) -> Option<String> {
        self.writer.write_all(line.as_ref()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut reply = String::new();
        match self.reader.read_line(&mut reply) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(reply.trim_end().to_owned()),
        }
    }

    /// Sends a write, asserts its reply, and notes the write as the ring file should hold it.
    fn write(&mut self, line: &str, reply: &str, writes: &mut Vec<Value>) {
        assert_eq!(self.send(line).as_deref(), Some(reply), "reply to {line}");
        let words: Vec<&str> = line.splitn(3, ' ').collect();
        writes.push(match words[..] {
            ["SET", key, value] => json!({ "Set": { "key": key, "value": value } }),
            ["DEL", key] => json!({ "Del": { "key": key } }),
            ["INCR", key] => json!({ "Incr": { "key": key } }),
            _ => unreachable!("{line} is not a write"),
        });
    }
}

/// What the clients did before the crash.
struct Crashed {
    ring: PathBuf,
    /// Every write sent, as the machine's input trees, sorted (clients ran at once).
    writes: Vec<Value>,
    /// The entries the clients left.
    entries: BTreeMap<String, String>,
    /// The server's stderr.
    stderr: String,
}

/// `CLIENTS` clients write at once, each to its own keys and all to one counter; then one
/// stores the largest integer and INCRs it, which kills the store.
fn crash_the_store(dir: &Path, checkpoint_every: u32) -> Crashed {
    let server = Server::start(dir, checkpoint_every);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let address = server.address.clone();
            std::thread::spawn(move || one_client(&address, id))
        })
        .collect();
    let mut writes = Vec::new();
    let mut hits = Vec::new();
    for client in clients {
        let (client_writes, client_hits) = client.join().unwrap();
        writes.extend(client_writes);
        hits.extend(client_hits);
    }
    hits.sort_unstable();
    assert_eq!(hits, (1..=(CLIENTS * HITS) as i64).collect::<Vec<_>>());

    let mut last = Client::connect(&server.address);
    let max = i64::MAX.to_string();
    last.write(&format!("SET big {max}"), "OK", &mut writes);
    assert_eq!(
        last.send("INCR big"),
        None,
        "the overflow closes the connection"
    );
    writes.push(json!({ "Incr": { "key": "big" } }));
    let ring = server.ring.clone();
    let (stderr, code) = server.wait();
    assert_eq!(code, Some(101), "a panic's exit code; stderr:\n{stderr}");

    writes.sort_by_key(Value::to_string);
    let mut entries: BTreeMap<String, String> = (0..CLIENTS)
        .flat_map(|id| {
            [
                (format!("user{id}"), format!("name of {id}, with spaces")),
                (format!("c{id}"), "3".to_owned()),
            ]
        })
        .collect();
    entries.insert("hits".into(), (CLIENTS * HITS).to_string());
    entries.insert("big".into(), max);
    Crashed {
        ring,
        writes,
        entries,
        stderr,
    }
}

/// One client's session: its writes, and the values the shared counter replied.
fn one_client(address: &str, id: usize) -> (Vec<Value>, Vec<i64>) {
    let mut client = Client::connect(address);
    let mut writes = Vec::new();
    let name = format!("name of {id}, with spaces");
    client.write(&format!("SET user{id} {name}"), "OK", &mut writes);
    let mut hits = Vec::new();
    for n in 1..=3 {
        client.write(&format!("INCR c{id}"), &n.to_string(), &mut writes);
        let reply = client.send("INCR hits").unwrap();
        writes.push(json!({ "Incr": { "key": "hits" } }));
        hits.push(reply.parse().unwrap());
    }
    for _ in 3..HITS {
        hits.push(client.send("INCR hits").unwrap().parse().unwrap());
        writes.push(json!({ "Incr": { "key": "hits" } }));
    }
    client.write(&format!("SET tmp{id} gone soon"), "OK", &mut writes);
    client.write(&format!("DEL tmp{id}"), "1", &mut writes);
    client.write(&format!("DEL tmp{id}"), "0", &mut writes);
    let refused = "ERR not an integer";
    client.write(&format!("INCR user{id}"), refused, &mut writes);
    let value = client.send(format!("GET user{id}"));
    assert_eq!(value, Some(format!("VALUE {name}")));
    assert_eq!(client.send("QUIT").as_deref(), Some("BYE"));
    (writes, hits)
}

fn kvstore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvstore"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kvstore")
}

/// Runs `kvstore flightrec ARGS --json` and parses what it prints, asserting the exit code.
fn flightrec_json(args: &[&str], code: i32) -> Value {
    let output = kvstore(&[&["flightrec"], args, &["--json"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

#[test]
fn a_crashed_store_verifies_and_replays_to_what_its_clients_wrote() {
    let dir = tempfile::tempdir().unwrap();
    // Checkpoints every 16 writes: the replay starts at one and verifies several.
    let crashed = crash_the_store(dir.path(), 16);
    assert!(
        crashed.stderr.contains("counter overflow"),
        "{}",
        crashed.stderr
    );
    let ring = arg(&crashed.ring);

    let inspect = flightrec_json(&["inspect", ring], 0);
    assert_eq!(
        inspect["machine"],
        json!({ "name": "kvstore", "version": 1 })
    );
    assert_eq!(inspect["status"], "crashed");
    assert_eq!(inspect["crash"]["kind"], "panic");
    assert_eq!(inspect["crash"]["message"], "counter overflow");
    assert_eq!(inspect["crash"]["thread"], "main");
    // The text's lane table keeps each lane's name apart from its kind, however long the
    // connection thread's name.
    let text = kvstore(&["flightrec", "inspect", ring]);
    let text = String::from_utf8_lossy(&text.stdout);
    for lane in inspect["lanes"].as_array().unwrap() {
        let (name, kind) = (
            lane["name"].as_str().unwrap(),
            lane["kind"].as_str().unwrap(),
        );
        let mut rows = text.lines().skip_while(|l| !l.starts_with("lanes")).skip(1);
        let row = rows.find_map(|l| Some(&l[l.find(name)? + name.len()..]));
        let row = row.unwrap_or_else(|| panic!("no row for lane {name}:\n{text}"));
        assert!(row.starts_with(' '), "{name}{row}");
        assert!(row.trim_start().starts_with(kind), "{name}{row}");
    }

    let verify = flightrec_json(&["verify", ring], 0);
    assert_eq!(verify["passed"], true);
    let (base, inputs) = (&verify["base_seq"], &verify["inputs"]);
    let replayed = base.as_u64().unwrap() + inputs.as_u64().unwrap();
    assert_eq!(replayed, crashed.writes.len() as u64);
    let checks = verify["checks"].as_array().unwrap();
    assert!(checks.len() > 1, "checkpoints every 16 writes: {checks:?}");
    let panics = verify["panics"].as_array().unwrap();
    assert_eq!(panics.len(), 1);
    assert_eq!(panics[0]["message"], "counter overflow");
    assert_eq!(panics[0]["seq"], crashed.writes.len() - 1);

    let replay = flightrec_json(&["replay", ring], 0);
    assert_eq!(replay["input"], json!({ "Incr": { "key": "big" } }));
    assert_eq!(replay["panic"]["message"], "counter overflow");
    assert_eq!(replay["state"]["entries"], json!(crashed.entries));
    let refused = CLIENTS;
    assert_eq!(replay["state"]["refused"], refused);
    assert_eq!(replay["state"]["writes"], crashed.writes.len());
}

#[test]
fn the_export_of_a_crashed_store_holds_every_write_and_the_panic() {
    let dir = tempfile::tempdir().unwrap();
    // No checkpoint but the first: the export holds every write.
    let crashed = crash_the_store(dir.path(), 100_000);
    let out = dir.path().join("kv.flightrec");
    let output = kvstore(&["flightrec", "export", arg(&crashed.ring), "-o", arg(&out)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "export: {stderr}");

    let export = Export::open(&out).unwrap();
    let meta = export.metadata();
    assert_eq!(
        (meta.machine_name.as_str(), meta.status.as_str()),
        ("kvstore", "crashed")
    );
    let crash = meta.crash.as_ref().expect("a crash record");
    assert_eq!(
        (crash.kind.as_str(), crash.message.as_str()),
        ("panic", "counter overflow")
    );
    assert_eq!(export.len(), crashed.writes.len() as u64);
    let mut inputs: Vec<Value> = (0..export.len())
        .map(|position| export.input(position).unwrap().input_tree().unwrap())
        .collect();
    assert_eq!(inputs.last(), Some(&json!({ "Incr": { "key": "big" } })));
    inputs.sort_by_key(Value::to_string);
    assert_eq!(inputs, crashed.writes);
    let last = export.state_tree(export.len() - 1).unwrap();
    assert_eq!(last["entries"], json!(crashed.entries));

    // The connection threads' `tracing` spans and events, through the layer, named after
    // their threads: one span and "connected" per client, one "received" per request.
    let events = export.events(0..export.event_count()).unwrap();
    let traced = |kind: TraceKind, message: &str| {
        let traced = events.iter().filter(|event| {
            event.kind == EventKind::Trace
                && event.name.starts_with("conn 127.0.0.1:")
                && event.trace_kind == kind
                && event.summary.starts_with(message)
        });
        traced.count()
    };
    let connections = CLIENTS + 1;
    assert_eq!(traced(TraceKind::SpanEnter, "connection"), connections);
    assert_eq!(traced(TraceKind::Event, "connected"), connections);
    let gets = CLIENTS;
    let requests = crashed.writes.len() + gets;
    assert_eq!(
        traced(TraceKind::Event, "received request=Write("),
        crashed.writes.len()
    );
    assert_eq!(traced(TraceKind::Event, "received "), requests);
}

#[test]
fn malformed_requests_get_errors_and_the_store_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 100_000);
    let mut client = Client::connect(&server.address);
    let bad: [(&[u8], &str); 5] = [
        (b"", "ERR empty line"),
        (b"FLY away", "ERR unknown command \"FLY\""),
        (b"SET lonely", "ERR SET needs a key and a value"),
        (b"GET a b", "ERR GET takes one key"),
        (b"GET \xff\xfe", "ERR requests are UTF-8 text"),
    ];
    for (line, reply) in bad {
        assert_eq!(client.send(line).as_deref(), Some(reply));
    }
    let long = vec![b'x'; 10_000];
    assert_eq!(
        client.send(&long).as_deref(),
        Some("ERR lines are at most 4096 bytes")
    );
    assert_eq!(client.send("SET a 1").as_deref(), Some("OK"));
    let mut other = Client::connect(&server.address);
    assert_eq!(other.send("INCR a").as_deref(), Some("2"));
    let replay = flightrec_json(&["replay", arg(&server.ring)], 0);
    assert_eq!(replay["state"]["entries"], json!({ "a": "2" }));
    assert_eq!(replay["state"]["writes"], 2);
}

#[test]
fn the_demo_runs_under_the_stores_own_flightrec_subcommand() {
    // The demo starts its service as a child of the same executable: through `kvstore
    // flightrec demo --service`, not `kvstore demo --service`, which kvstore does not know.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = kvstore(&[
        "flightrec",
        "demo",
        "--no-tui",
        "--rate",
        "0",
        "--crash-after",
        "2000",
        "--dir",
        arg(dir.path()),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let rings: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read the demo's directory")
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "ring"))
        .collect();
    assert_eq!(rings.len(), 1, "one ring file in --dir:\n{stdout}");
    assert!(
        stdout.contains("panic"),
        "the demo names the crash:\n{stdout}"
    );
}

//! The service: one thread accepts connections, a thread per connection parses its requests,
//! and the machine thread (the caller's) owns the recorded store and answers them one at a
//! time, so the recorded order of writes is the order they were applied in.

use std::io::{self, BufRead, BufReader, Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};

use flightrec_recorder::{FlightrecLayer, Recorded};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::machine::{KvStore, Write};
use crate::protocol::{self, Request, MAX_LINE};

/// A request on its way to the machine thread, with where to send the reply.
struct Job {
    request: Request,
    reply: Sender<String>,
}

/// Listens on 127.0.0.1:`port` (0 picks a free port) and serves until the process dies.
pub fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    // The ring file: FLIGHTREC_PATH or FLIGHTREC_DIR if set, else /dev/shm (see `Builder`).
    let mut recorded = flightrec_recorder::record(KvStore::default())?;
    // Every thread's `tracing` events and spans go into the same ring file.
    tracing_subscriber::registry()
        .with(FlightrecLayer::new(recorded.tracer()))
        .init();
    let address = listener.local_addr()?;
    println!(
        "kvstore listening on {address}, recording to {}",
        recorded.path().display()
    );
    let (jobs, queue) = mpsc::channel();
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept(&listener, &jobs))?;
    tracing::info!(%address, "serving");
    answer_all(&mut recorded, queue);
    Ok(())
}

/// The machine thread's loop. A panic in `apply` unwinds out of here, marking the ring file
/// crashed (the recorder's panic hook has already written the message and location).
fn answer_all(recorded: &mut Recorded<KvStore>, queue: Receiver<Job>) {
    for job in queue {
        let reply = answer(recorded, job.request);
        // The client may have gone; its reply is then nobody's concern.
        let _ = job.reply.send(reply);
    }
}

/// Reads are answered from the state; writes are recorded and applied, then answered.
fn answer(recorded: &mut Recorded<KvStore>, request: Request) -> String {
    let write = match request {
        Request::Get(key) => {
            return recorded
                .machine()
                .get(&key)
                .map_or("NIL".into(), |value| format!("VALUE {value}"))
        }
        Request::Quit => return "BYE".into(),
        Request::Write(write) => write,
    };
    let existed = recorded.machine().get(write.key()).is_some();
    recorded.apply(&write);
    match write {
        Write::Set { .. } => "OK".into(),
        Write::Del { .. } => u8::from(existed).to_string(),
        Write::Incr { key } => recorded
            .machine()
            .integer(&key)
            .map_or("ERR not an integer".into(), |n| n.to_string()),
    }
}

fn accept(listener: &TcpListener, jobs: &Sender<Job>) {
    for stream in listener.incoming() {
        let spawned = stream.and_then(|stream| {
            let jobs = jobs.clone();
            let name = format!("conn {}", stream.peer_addr()?);
            std::thread::Builder::new()
                .name(name)
                .spawn(move || connection(stream, &jobs))
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "connection not served");
        }
    }
}

/// Serves one client until it quits or hangs up.
fn connection(stream: TcpStream, jobs: &Sender<Job>) {
    let span = tracing::info_span!("connection");
    let _entered = span.enter();
    tracing::info!("connected");
    match converse(stream, jobs) {
        Ok(()) => tracing::info!("closed"),
        Err(error) => tracing::warn!(%error, "closed"),
    }
}

fn converse(stream: TcpStream, jobs: &Sender<Job>) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let (reply_to, replies) = mpsc::channel();
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        if read == MAX_LINE && !line.ends_with(b"\n") {
            reader.skip_until(b'\n')?;
            writeln!(writer, "ERR lines are at most {MAX_LINE} bytes")?;
            continue;
        }
        let request = match protocol::parse(&line) {
            Ok(Request::Quit) => return writeln!(writer, "BYE"),
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%error, "bad request");
                writeln!(writer, "ERR {error}")?;
                continue;
            }
        };
        tracing::info!(?request, "received");
        let job = Job {
            request,
            reply: reply_to.clone(),
        };
        // Either fails only once the machine thread is gone: the service is going down.
        let reply = jobs.send(job).ok().and_then(|()| replies.recv().ok());
        let Some(reply) = reply else {
            return Err(io::Error::other("the store has stopped"));
        };
        writeln!(writer, "{reply}")?;
    }
}

//! Cluster mode end to end, with real processes on loopback: a 3-member etcd cluster (Debian's
//! etcd-server), PostgreSQL from its own initdb, mosquitto, a subscriber with a persistent
//! session, and 3 streetwatch nodes sharing 7 real-time file cameras: two parked cars, a corner
//! where garbage is dumped and cleared, four empty streets.
//!
//! 1. Every camera is run by exactly one node, and its retained status names that node.
//! 2. The node running a parked car is killed (SIGKILL): its cameras are online on the others
//!    within 15 s (lease TTL 5 s), and the car's event continues under its id, seq one past.
//! 3. A node is frozen (SIGSTOP) for twice the TTL and resumed: its ledger has nothing written
//!    for the cameras it lost after the moment another node took them, and it rejoins.
//! 4. One etcd member is killed: no camera changes hands.
//! 5. The killed node starts again: cameras hand back to it, and every event's messages stay
//!    one event with contiguous seq.
//! 6. Accounting: the nodes' ledgers, PostgreSQL and the subscriber hold the same messages
//!    (duplicates are exact copies), one `new` per event, each event's seq contiguous;
//!    `report --ledger postgres://…` by grid counts what the test counted.
//!
//! Between 1 and 2, history follows a camera: a pile is dumped and cleared on one node, the
//! camera moves (its node stops), and the next pile there is counted as a relapse on the new
//! node, its history read from the PostgreSQL city ledger.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use streetwatch::cluster::placement::{self, Candidate};
use streetwatch::compose;
use support::{Daemon, Received, Subscriber};

const TTL: u64 = 5;

/// The tests here run one at a time: each runs several daemons, and the failover test's
/// timings should not depend on the other's load.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One etcd member process.
struct EtcdMember {
    child: Option<Child>,
}

/// A 3-member etcd cluster on loopback, killed on drop.
struct Etcd {
    members: Vec<EtcdMember>,
    endpoints: Vec<String>,
}

impl Etcd {
    fn start(dir: &Path, members: usize) -> Self {
        let ports: Vec<(u16, u16)> = (0..members)
            .map(|_| (support::free_port(), support::free_port()))
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut members = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let data = dir.join(format!("etcd-{name}"));
            let _ = std::fs::remove_dir_all(&data);
            let log = std::fs::File::create(dir.join(format!("etcd-{name}.log"))).unwrap();
            let child = Command::new("etcd")
                .args(["--name", &name, "--data-dir"])
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "streetwatch-test",
                ])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("etcd is not installed: run `make setup` (Debian's etcd-server)");
            members.push(EtcdMember { child: Some(child) });
            endpoints.push(format!("http://127.0.0.1:{client}"));
        }
        let etcd = Self { members, endpoints };
        for e in &etcd.endpoints {
            let port: u16 = e.rsplit(':').next().unwrap().parse().unwrap();
            assert!(
                support::wait_for_port(port, Duration::from_secs(20)),
                "etcd did not listen on {e}"
            );
        }
        // A leader is elected once a quorum runs: wait for etcdctl to read.
        let until = Instant::now() + Duration::from_secs(30);
        while !etcd.healthy() {
            assert!(
                Instant::now() < until,
                "the etcd cluster did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }

    fn healthy(&self) -> bool {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &self.endpoints.join(","),
                "endpoint",
                "health",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `etcdctl ARGS…` against the cluster; panics when it fails.
    fn ctl(&self, args: &[&str]) {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints.join(",")])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A PostgreSQL server from its own `initdb` on a free loopback port, stopped on drop. As root
/// it runs as the `postgres` user (PostgreSQL refuses root).
struct Postgres {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Postgres {
    fn start() -> Self {
        let bin = ["15", "16", "17"]
            .into_iter()
            .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
            .find(|d| d.join("initdb").exists())
            .expect("PostgreSQL is not installed: run `make setup` (Debian's postgresql)");
        // Under /tmp: the postgres user cannot reach most build folders.
        let dir =
            std::env::temp_dir().join(format!("streetwatch-cluster-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let run = |program: &Path| {
            let mut c = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            c.stdout(Stdio::null());
            c
        };
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let data = dir.join("data");
        let init = run(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "streetwatch", "--no-sync", "-D"])
            .arg(&data)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(init.success(), "initdb failed");
        let port = support::free_port();
        let log = std::fs::File::create(dir.join("postgres.log")).unwrap();
        let child = run(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .stderr(log)
            .spawn()
            .unwrap();
        assert!(
            support::wait_for_port(port, Duration::from_secs(30)),
            "PostgreSQL did not listen"
        );
        Self {
            child: Some(child),
            dir,
            port,
        }
    }

    fn url(&self) -> String {
        format!("postgres://streetwatch@127.0.0.1:{}/postgres", self.port)
    }

    /// `(event_id, seq)` -> payload of every message in the city ledger.
    /// The rows of a query, each as its columns' text (tab-separated by psql; the last
    /// column may hold tabs).
    fn query(&self, sql: &str, columns: usize) -> Vec<Vec<String>> {
        let out = Command::new("psql")
            .args([&self.url(), "-At", "-F", "\t", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.splitn(columns, '\t').map(String::from).collect())
            .collect()
    }

    fn messages(&self) -> BTreeMap<(String, u64), String> {
        self.query("SELECT event_id, seq, payload FROM streetwatch_messages", 3)
            .into_iter()
            .map(|r| ((r[0].clone(), r[1].parse().unwrap()), r[2].clone()))
            .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGINT to the postmaster itself (runuser does not pass it on): a fast shutdown.
            let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
                .ok()
                .and_then(|t| t.lines().next().map(str::to_string));
            match pid {
                Some(pid) => {
                    let _ = Command::new("kill").args(["-INT", &pid]).status();
                }
                None => {
                    let _ = c.kill();
                }
            }
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The street of parking-basic for 60 s with only car-1 along `path` (none: an empty street).
fn render(dir: &Path, name: &str, path: Option<Vec<[f64; 3]>>) -> PathBuf {
    let mut sc =
        compose::load_scenario(&support::root().join("configs/scenarios/parking-basic.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
    sc.name = name.into();
    sc.duration_seconds = 60.0;
    sc.lighting.clear();
    sc.objects.retain(|o| o.id == "car-1");
    match path {
        Some(p) => sc.objects[0].path = p,
        None => sc.objects.clear(),
    }
    let clip = dir.join(format!("{name}.mp4"));
    compose::render(&sc, &clip).unwrap_or_else(|e| panic!("{e}"));
    clip
}

const CAMERAS: [&str; 7] = [
    "cam-park-1",
    "cam-park-2",
    "cam-relapse",
    "cam-empty-1",
    "cam-empty-2",
    "cam-empty-3",
    "cam-empty-4",
];

struct Clips {
    parked: PathBuf,
    empty: PathBuf,
    pile: PathBuf,
}

/// 60 s of the garbage-relapse corner with one pile of bags dumped at 3 s and cleared at 25 s
/// (one event that ends, so the next pile there, when the clip starts again, is a relapse).
fn render_pile(dir: &Path) -> PathBuf {
    let scenario = support::root().join("configs/scenarios/garbage-relapse.toml");
    let mut sc = compose::load_scenario(&scenario).unwrap_or_else(|e| panic!("{e}"));
    sc.name = "pile".into();
    sc.duration_seconds = 60.0;
    sc.objects.retain(|o| o.id == "pile-1");
    sc.objects[0].path = vec![[3.0, 0.55, 0.92], [25.0, 0.55, 0.92]];
    let clip = dir.join("pile.mp4");
    compose::render(&sc, &clip).unwrap_or_else(|e| panic!("{e}"));
    clip
}

impl Clips {
    /// A car parked from the first frame; an empty street; a pile dumped and cleared.
    fn render(dir: &Path) -> Self {
        Self {
            parked: render(dir, "parked", Some(vec![[0.0, 0.33, 0.86]])),
            empty: render(dir, "empty", None),
            pile: render_pile(dir),
        }
    }
}

/// The consoles' token (an admin), given to every node and command in `SW_CLUSTER_TOKEN`.
const TOKEN: &str = "cluster-test-token-7f3a";

fn write_config(
    path: &Path,
    node: &str,
    broker: &str,
    etcd: &[String],
    city: &str,
    clips: &Clips,
    console: u16,
) {
    let mut text = node_text(node, broker, etcd, Some(city), console);
    for cam in CAMERAS {
        let (clip, kind) = match cam {
            "cam-relapse" => (&clips.pile, "garbage_watch"),
            c if c.starts_with("cam-park") => (&clips.parked, "no_parking"),
            _ => (&clips.empty, "no_parking"),
        };
        text.push_str(&format!(
            r#"
[[cameras]]
id = "{cam}"
url = "{clip}"
detect_every_seconds = 1.0
pace = 1.0
repeat = true
  [[cameras.zones]]
  id = "south-strip"
  kind = "{kind}"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = 5.0
  grid = "第八网格"
"#,
            clip = clip.display()
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// `streetwatch cluster status --json`.
fn cluster_status(config: &Path) -> Value {
    let out = Command::new(support::binary())
        .current_dir(support::root())
        .args(["cluster", "status", "--json", "--config"])
        .arg(config)
        .env("SW_CLUSTER_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cluster status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Camera -> (node, epoch, since ms) from a status.
fn owners(status: &Value) -> BTreeMap<String, (String, i64, i64)> {
    status["owners"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(cam, o)| {
            let since = chrono::DateTime::parse_from_rfc3339(o["since"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            (
                cam.clone(),
                (
                    o["node"].as_str().unwrap().to_string(),
                    o["epoch"].as_i64().unwrap(),
                    since,
                ),
            )
        })
        .collect()
}

/// The latest retained-topic status of each camera received after `after`.
fn statuses(received: &[Received], after: Instant) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for m in received {
        if m.at < after
            || !m.topic.starts_with("streetwatch/cameras/")
            || !m.topic.ends_with("/status")
        {
            continue;
        }
        let cam = m.topic.split('/').nth(2).unwrap().to_string();
        out.insert(cam, m.json());
    }
    out
}

fn events(received: &[Received]) -> Vec<Value> {
    received
        .iter()
        .filter(|m| m.topic.starts_with("streetwatch/events/") && !m.topic.ends_with("/set"))
        .map(|m| m.json())
        .collect()
}

/// The node ids that run every camera according to etcd, once all 6 have an owner.
fn wait_all_owned(
    config: &Path,
    timeout: Duration,
    not_on: Option<&str>,
) -> BTreeMap<String, (String, i64, i64)> {
    let until = Instant::now() + timeout;
    loop {
        let o = owners(&cluster_status(config));
        if o.len() == CAMERAS.len()
            && not_on.is_none_or(|n| o.values().all(|(node, _, _)| node != n))
        {
            return o;
        }
        assert!(
            Instant::now() < until,
            "not every camera has a node: {o:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until `nodes` nodes are registered and every camera runs where the placement puts it.
fn wait_placed(
    config: &Path,
    nodes: usize,
    timeout: Duration,
) -> BTreeMap<String, (String, i64, i64)> {
    wait_placed_of(config, &CAMERAS, nodes, timeout)
}

/// [`wait_placed`] for a list of cameras.
fn wait_placed_of(
    config: &Path,
    cameras: &[&str],
    nodes: usize,
    timeout: Duration,
) -> BTreeMap<String, (String, i64, i64)> {
    let until = Instant::now() + timeout;
    let cameras: Vec<String> = cameras.iter().map(|c| c.to_string()).collect();
    loop {
        let status = cluster_status(config);
        let candidates: Vec<Candidate> = status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| Candidate {
                node: n["node"].as_str().unwrap().to_string(),
                capacity: n["capacity"].as_u64().unwrap() as usize,
            })
            .collect();
        let o = owners(&status);
        let want = placement::place(&cameras, &candidates);
        let got: BTreeMap<String, String> =
            o.iter().map(|(c, v)| (c.clone(), v.0.clone())).collect();
        if candidates.len() == nodes && got == want {
            return o;
        }
        assert!(
            Instant::now() < until,
            "cameras not where the placement puts them: {got:#?} wanted {want:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `(camera, written_ms)` of every message in a node's ledger.
fn written(storage: &Path) -> Vec<(String, i64, String, u64)> {
    let db = rusqlite::Connection::open(storage.join("ledger.sqlite")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT i.camera, m.written_ms, m.event_id, m.seq FROM messages m
             JOIN incidents i ON i.event_id = m.event_id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn cameras_are_shared_fenced_and_carried_on_across_nodes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = support::artifacts_dir("cluster");
    let clips = Clips::render(&dir);
    let mut etcd = Etcd::start(&dir, 3);
    let city = Postgres::start();
    let broker = support::Mosquitto::start();
    let sub = Subscriber::connect_as(broker.port, &["streetwatch/#"], "cluster-test-sub", false);
    let nodes = ["n1", "n2", "n3"];
    let consoles: BTreeMap<&str, u16> = nodes.iter().map(|n| (*n, support::free_port())).collect();
    let configs: BTreeMap<&str, PathBuf> = nodes
        .iter()
        .map(|n| {
            let c = dir.join(format!("{n}.toml"));
            let _ = std::fs::remove_dir_all(dir.join(format!("data-{n}")));
            write_config(
                &c,
                n,
                &broker.url(),
                &etcd.endpoints,
                &city.url(),
                &clips,
                consoles[n],
            );
            (*n, c)
        })
        .collect();
    // Each start of a node logs to its own file: n1-1.log, n1-2.log, ...
    let runs = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
    let start = |n: &str| {
        let run = {
            let mut r = runs.borrow_mut();
            let k = r.entry(n.to_string()).or_default();
            *k += 1;
            *k
        };
        Daemon::start(
            &configs[n],
            &dir.join(format!("{n}-{run}.log")),
            &[("SW_CLUSTER_TOKEN", TOKEN)],
        )
    };
    let mut daemons: BTreeMap<&str, Daemon> = nodes.iter().map(|n| (*n, start(n))).collect();
    let any = configs["n1"].clone();

    // 1. Every camera on exactly one node, once the nodes that started first have handed the
    // others their share (after the minimum stay); each status names its node.
    let began = Instant::now();
    let placed = wait_placed(&any, 3, Duration::from_secs(60));
    let status_names_owner = |placed: &BTreeMap<String, (String, i64, i64)>, after: Instant| {
        let placed = placed.clone();
        move |r: &[Received]| {
            let s = statuses(r, after);
            CAMERAS.iter().all(|c| {
                s.get(*c).is_some_and(|st| {
                    st["state"] == "online" && st["node"] == placed[*c].0.as_str()
                })
            })
        }
    };
    assert!(
        sub.wait_until(Duration::from_secs(60), status_names_owner(&placed, began)),
        "statuses do not name the owners {placed:#?}: {:#?}",
        statuses(&sub.all(), began)
    );
    let per_node: BTreeSet<&str> = placed.values().map(|(n, _, _)| n.as_str()).collect();
    assert!(per_node.len() >= 2, "6 cameras on one node: {placed:#?}");
    for (n, d) in &daemons {
        let log = d.log_text();
        assert!(
            log.contains(&format!("cluster: joined as {n}")),
            "{n}:\n{log}"
        );
    }
    // Every node's console shows the same cluster, and its metrics its own lease and epochs.
    let bearer = format!("Authorization: Bearer {TOKEN}");
    for (n, port) in &consoles {
        let (code, body) = support::curl(
            "GET",
            &format!("http://127.0.0.1:{port}/api/cluster"),
            &[&bearer],
            None,
        );
        assert_eq!(code, 200, "{n}: {}", String::from_utf8_lossy(&body));
        let seen: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen["node"], *n);
        assert_eq!(owners(&seen), placed, "{n}'s console shows another cluster");
        let (code, body) = support::curl(
            "GET",
            &format!("http://127.0.0.1:{port}/metrics"),
            &[&bearer],
            None,
        );
        assert_eq!(code, 200);
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains(&format!("streetwatch_cluster_lease_held{{node=\"{n}\"}} 1")),
            "{n}:\n{text}"
        );
        for (camera, (node, epoch, _)) in &placed {
            let line =
                format!("streetwatch_cluster_ownership_epoch{{camera=\"{camera}\"}} {epoch}");
            assert_eq!(text.contains(&line), node == n, "{n}: {line}\n{text}");
        }
    }

    // 1b. History follows the camera. A pile is dumped on cam-relapse's corner and cleared: its
    // event ends. Its node stops (a clean hand-over); on the node that takes the camera the
    // corner fills again, and the new event counts the first and is a relapse, as on one node.
    let relapse_events = |r: &[Received]| -> Vec<Value> {
        events(r)
            .into_iter()
            .filter(|m| m["camera"]["id"] == "cam-relapse")
            .collect()
    };
    assert!(
        sub.wait_until(Duration::from_secs(90), |r| relapse_events(r)
            .iter()
            .any(|m| m["type"] == "end")),
        "cam-relapse's first event did not end: {:#?}",
        relapse_events(&sub.all())
    );
    let first = relapse_events(&sub.all())
        .into_iter()
        .find(|m| m["type"] == "new")
        .unwrap();
    assert_eq!(first["kind"], "exposed_garbage", "{first:#}");
    assert_eq!(first["recurrence"]["count_7d"], 0);
    let relapse_node = placed["cam-relapse"].0.clone();
    daemons.get_mut(relapse_node.as_str()).unwrap().stop();
    let stopped_at = Instant::now();
    assert!(
        sub.wait_until(Duration::from_secs(60), |r| relapse_events(r)
            .iter()
            .any(|m| m["type"] == "new" && m["event_id"] != first["event_id"])),
        "no second event on cam-relapse after it moved from {relapse_node}"
    );
    let second = relapse_events(&sub.all())
        .into_iter()
        .find(|m| m["type"] == "new" && m["event_id"] != first["event_id"])
        .unwrap();
    let moved_to = statuses(&sub.all(), stopped_at)["cam-relapse"]["node"].clone();
    assert_ne!(moved_to, relapse_node.as_str(), "cam-relapse did not move");
    assert_eq!(
        second["recurrence"]["count_7d"], 1,
        "the history did not follow cam-relapse to {moved_to}: {second:#}"
    );
    assert_eq!(second["kind"], "exposed_garbage", "{second:#}");
    assert_eq!(second["recurrence"]["relapse"], true, "{second:#}");
    assert_eq!(
        second["recurrence"]["previous_end"],
        first_end(&sub, &first)
    );
    assert!(second["recurrence"].get("history_partial").is_none());
    daemons.insert(
        nodes.iter().find(|n| **n == relapse_node).unwrap(),
        start(&relapse_node),
    );
    let placed = wait_placed(&any, 3, Duration::from_secs(60));

    // 2. The parked cars raise their events; the node of cam-park-1 is killed.
    let new_of = |cam: &'static str| {
        move |r: &[Received]| {
            events(r)
                .iter()
                .any(|m| m["type"] == "new" && m["camera"]["id"] == cam)
        }
    };
    assert!(
        sub.wait_until(Duration::from_secs(60), new_of("cam-park-1")),
        "no event on cam-park-1"
    );
    assert!(
        sub.wait_until(Duration::from_secs(30), new_of("cam-park-2")),
        "no event on cam-park-2"
    );
    let before = events(&sub.all());
    let park1 = before
        .iter()
        .find(|m| m["type"] == "new" && m["camera"]["id"] == "cam-park-1")
        .unwrap()
        .clone();
    let id1 = park1["event_id"].as_str().unwrap().to_string();
    let victim = placed["cam-park-1"].0.clone();
    let victims_cameras: Vec<String> = placed
        .iter()
        .filter(|(_, o)| o.0 == victim)
        .map(|(c, _)| c.clone())
        .collect();
    let last_seq = |id: &str| {
        events(&sub.all())
            .iter()
            .filter(|m| m["event_id"] == id)
            .filter_map(|m| m["seq"].as_u64())
            .max()
            .unwrap()
    };
    // The command center confirms the car's event; only the node running the camera answers.
    let review_set = format!("streetwatch/events/{id1}/review/set");
    let reviews_of = |id: &str, r: &[Received]| -> Vec<Value> {
        r.iter()
            .filter(|m| m.topic.starts_with("streetwatch/reviews/") && m.json()["event_id"] == id)
            .map(Received::json)
            .collect()
    };
    support::publish(
        broker.port,
        &review_set,
        r#"{"state": "confirmed", "by": "指挥中心", "note": "占道停车"}"#,
    );
    assert!(
        sub.wait_until(Duration::from_secs(15), |r| !reviews_of(&id1, r).is_empty()),
        "nobody confirmed {id1}"
    );
    // Shipped to the city ledger within a moment (the shipper looks twice a second).
    std::thread::sleep(Duration::from_secs(2));
    let seq_before_kill = last_seq(&id1);
    daemons.get_mut(victim.as_str()).unwrap().kill();
    let killed_at = Instant::now();
    let moved = wait_all_owned(&any, Duration::from_secs(15), Some(&victim));
    assert!(
        sub.wait_until(Duration::from_secs(15).saturating_sub(killed_at.elapsed()), |r| {
            let s = statuses(r, killed_at);
            victims_cameras.iter().all(|c| {
                s.get(c).is_some_and(|st| st["state"] == "online" && st["node"] == moved[c].0.as_str())
            })
        }),
        "the killed node's cameras {victims_cameras:?} were not online elsewhere within 15 s: {:#?}",
        statuses(&sub.all(), killed_at)
    );
    let took_over = killed_at.elapsed();
    // The car is still there: its event continues under its id, seq one past the last.
    let resumed = |id: String, seq: u64| {
        move |r: &[Received]| {
            events(r)
                .iter()
                .any(|m| m["event_id"] == id.as_str() && m["seq"].as_u64() == Some(seq))
        }
    };
    assert!(
        sub.wait_until(
            Duration::from_secs(40),
            resumed(id1.clone(), seq_before_kill + 1)
        ),
        "cam-park-1's event {id1} was not continued on {}",
        moved["cam-park-1"].0
    );
    let next = events(&sub.all())
        .into_iter()
        .find(|m| m["event_id"] == id1.as_str() && m["seq"].as_u64() == Some(seq_before_kill + 1))
        .unwrap();
    assert_eq!(next["type"], "update");
    assert_eq!(next["start_time"], park1["start_time"]);
    println!("killed {victim}: its cameras online elsewhere after {took_over:?}");
    // The review state followed the camera: the node that carries the event on dispatches it
    // from `confirmed`, as the dead node would have.
    support::publish(
        broker.port,
        &review_set,
        r#"{"state": "dispatched", "by": "指挥中心", "unit": "第三执法中队"}"#,
    );
    assert!(
        sub.wait_until(Duration::from_secs(15), |r| reviews_of(&id1, r)
            .iter()
            .any(|m| m["state"] == "dispatched")),
        "nobody dispatched {id1}"
    );
    let changes = reviews_of(&id1, &sub.all());
    assert_eq!(
        changes.len(),
        2,
        "one answer per change, from one node: {changes:#?}"
    );
    assert_eq!(changes[1]["from"], "confirmed", "{changes:#?}");
    assert_eq!(changes[1]["seq"], 2, "{changes:#?}");
    // Nodes that do not run the camera said nothing.
    let errors: Vec<Received> = sub
        .all()
        .into_iter()
        .filter(|m| m.topic.ends_with("/errors"))
        .collect();
    assert!(
        errors.is_empty(),
        "{:#?}",
        errors.iter().map(Received::text).collect::<Vec<_>>()
    );

    // 3. Freeze a node holding cameras for twice the TTL.
    let frozen = moved["cam-park-2"].0.clone();
    let frozen_cams: Vec<String> = moved
        .iter()
        .filter(|(_, o)| o.0 == frozen)
        .map(|(c, _)| c.clone())
        .collect();
    let pid = daemons[frozen.as_str()].child.id();
    support::signal(pid, "STOP");
    std::thread::sleep(Duration::from_secs(2 * TTL));
    let during = wait_all_owned(&any, Duration::from_secs(10), Some(&frozen));
    support::signal(pid, "CONT");
    std::thread::sleep(Duration::from_secs(3));
    let frozen_storage = support::root().join(&dir).join(format!("data-{frozen}"));
    let frozen_storage = if frozen_storage.exists() {
        frozen_storage
    } else {
        dir.join(format!("data-{frozen}"))
    };
    for (cam, w, event, seq) in written(&frozen_storage) {
        if !frozen_cams.contains(&cam) {
            continue;
        }
        let taken = during[&cam].2;
        assert!(
            w < taken,
            "{frozen} wrote {event} seq {seq} for {cam} at {w}, after {} took it at {taken}",
            during[&cam].0
        );
    }
    let until = Instant::now() + Duration::from_secs(20);
    while !cluster_status(&any)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["node"] == frozen.as_str())
    {
        assert!(Instant::now() < until, "{frozen} did not rejoin");
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = daemons[frozen.as_str()].log_text();
    assert!(
        log.contains("lease"),
        "{frozen} does not say it lost its lease:\n{log}"
    );

    // 4. The etcd member a node talks to dies: the node goes on through another member with
    // the same lease, and no camera changes hands.
    // Two nodes live: the killed one is still down.
    let settled = wait_placed(&any, 2, Duration::from_secs(40));
    let holder = settled["cam-park-2"].0.clone();
    let log = daemons[holder.as_str()].log_text();
    let member_url = log
        .lines()
        .rev()
        .find_map(|l| l.split("cluster: connected to etcd ").nth(1))
        .unwrap_or_else(|| panic!("{holder} does not say which etcd member it uses:\n{log}"))
        .trim()
        .to_string();
    let member = etcd
        .endpoints
        .iter()
        .position(|e| *e == member_url)
        .unwrap();
    etcd.kill(member);
    std::thread::sleep(Duration::from_secs(2 * TTL));
    let after = wait_all_owned(&any, Duration::from_secs(5), None);
    assert_eq!(
        after, settled,
        "etcd member {member_url}, which {holder} used, died and cameras changed hands"
    );
    let log = daemons[holder.as_str()].log_text();
    assert!(
        log.contains("trying the other members with the same lease"),
        "{holder} did not notice its etcd member die:\n{log}"
    );

    // 5. The killed node starts again: cameras hand back to it after their minimum stay.
    let restarted_at = Instant::now();
    daemons.insert(
        nodes.iter().find(|n| **n == victim).unwrap(),
        start(&victim),
    );
    let until = Instant::now() + Duration::from_secs(45);
    loop {
        let o = owners(&cluster_status(&any));
        if o.values().any(|(n, _, _)| *n == victim) && o.len() == CAMERAS.len() {
            break;
        }
        assert!(
            Instant::now() < until,
            "no camera went back to {victim}: {o:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "{victim} restarted: cameras back after {:?}",
        restarted_at.elapsed()
    );
    std::thread::sleep(Duration::from_secs(5));

    // 6. Stop all; account for every message.
    for d in daemons.values_mut() {
        d.stop();
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut ledgers: BTreeMap<(String, u64), String> = BTreeMap::new();
    for n in nodes {
        let storage = dir.join(format!("data-{n}"));
        assert_eq!(
            support::outbox_backlog(&storage),
            0,
            "{n} has undelivered messages"
        );
        for (key, payload) in support::ledger_messages(&storage) {
            if let Some(other) = ledgers.get(&key) {
                let (a, b): (Value, Value) = (
                    serde_json::from_str(other).unwrap(),
                    serde_json::from_str(&payload).unwrap(),
                );
                assert_eq!(a, b, "{key:?} differs between ledgers");
            }
            ledgers.insert(key, payload);
        }
    }
    let received = support::received_events(&sub.all());
    let mut got: BTreeMap<(String, u64), Value> = BTreeMap::new();
    for (key, m) in received {
        if let Some(first) = got.get(&key) {
            assert_eq!(first, &m, "duplicate {key:?} is not an exact copy");
        }
        got.insert(key, m);
    }
    // The city ledger holds the same messages, each once.
    let in_city = city.messages();
    for (key, payload) in &in_city {
        let (a, b): (Value, Value) = (
            serde_json::from_str(payload).unwrap(),
            serde_json::from_str(&ledgers[key]).unwrap(),
        );
        assert_eq!(a, b, "{key:?} differs between PostgreSQL and the nodes");
    }
    assert_eq!(
        in_city.keys().collect::<BTreeSet<_>>(),
        ledgers.keys().collect::<BTreeSet<_>>(),
        "the city ledger and the nodes' ledgers differ"
    );
    let in_ledgers: BTreeSet<&(String, u64)> = ledgers.keys().collect();
    let at_subscriber: BTreeSet<&(String, u64)> = got.keys().collect();
    assert_eq!(in_ledgers, at_subscriber, "ledgers and subscriber differ");
    let mut by_event: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for ((id, _), m) in &got {
        by_event.entry(id.as_str()).or_default().push(m);
    }
    for (id, msgs) in &by_event {
        let news = msgs.iter().filter(|m| m["type"] == "new").count();
        assert_eq!(news, 1, "event {id} has {news} new messages");
        let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        let want: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(seqs, want, "event {id}'s seq is not contiguous");
    }
    let parked_events: BTreeSet<&str> = by_event
        .iter()
        .filter(|(_, m)| {
            m[0]["camera"]["id"]
                .as_str()
                .unwrap()
                .starts_with("cam-park")
        })
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        parked_events.len(),
        2,
        "each parked car is one event across every move: {parked_events:?}"
    );
    assert!(
        by_event.values().all(|m| !m[0]["camera"]["id"]
            .as_str()
            .unwrap()
            .starts_with("cam-empty")),
        "an event on an empty street"
    );
    // The city-wide report from PostgreSQL counts what the test counted, by grid.
    let out = Command::new(support::binary())
        .current_dir(support::root())
        .args([
            "report",
            "--ledger",
            &city.url(),
            "--since",
            "2h",
            "--by",
            "grid",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["totals"]["count"],
        by_event.len() as u64,
        "{report:#}"
    );
    let grid = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "第八网格")
        .unwrap_or_else(|| panic!("no 第八网格 in {report:#}"));
    assert_eq!(grid["count"], by_event.len() as u64);
    let relapses = by_event
        .values()
        .filter(|m| m[0]["recurrence"]["relapse"] == true)
        .count();
    assert_eq!(grid["relapses"], relapses as u64, "{grid:#}");
    // The review changes are in the city ledger, each from the node that made it, and the
    // city report counts the confirmed, dispatched event.
    let reviews = city.query(
        &format!("SELECT seq, to_state, node FROM streetwatch_reviews WHERE event_id = '{id1}' ORDER BY seq"),
        3,
    );
    let want = [
        ["1", "confirmed", victim.as_str()],
        ["2", "dispatched", moved["cam-park-1"].0.as_str()],
    ];
    assert_eq!(reviews, want.map(|r| r.map(String::from).to_vec()).to_vec());
    assert_eq!(grid["reviewed"], 1, "{grid:#}");
    assert_eq!(grid["confirmed"], 1, "{grid:#}");
    assert!(grid["median_minutes_to_dispatch"].is_number(), "{grid:#}");
    sub.assert_payloads_valid();
}

/// The `end_time` of `first`'s event, as the next event's `previous_end` gives it.
fn first_end(sub: &Subscriber, first: &Value) -> Value {
    events(&sub.all())
        .into_iter()
        .find(|m| m["event_id"] == first["event_id"] && m["type"] == "end")
        .map(|m| m["end_time"].clone())
        .unwrap_or(Value::Null)
}

/// A camera taken while the city ledger cannot be read starts anyway, and its events say their
/// history is partial.
#[test]
fn a_camera_starts_without_the_city_ledger_and_says_its_history_is_partial() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = support::artifacts_dir("cluster-no-city");
    let clips = Clips::render(&dir);
    let etcd = Etcd::start(&dir, 1);
    let broker = support::Mosquitto::start();
    let sub = Subscriber::connect(broker.port, &["streetwatch/#"]);
    // Nothing listens there.
    let nowhere = format!(
        "postgres://streetwatch@127.0.0.1:{}/city",
        support::free_port()
    );
    let config = dir.join("n1.toml");
    let _ = std::fs::remove_dir_all(dir.join("data-n1"));
    write_config(
        &config,
        "n1",
        &broker.url(),
        &etcd.endpoints,
        &nowhere,
        &clips,
        support::free_port(),
    );
    let daemon = Daemon::start(&config, &dir.join("n1.log"), &[("SW_CLUSTER_TOKEN", TOKEN)]);
    assert!(
        sub.wait_until(Duration::from_secs(60), |r| events(r)
            .iter()
            .any(|m| m["type"] == "new" && m["camera"]["id"] == "cam-park-1")),
        "cam-park-1 raised nothing without the city ledger:\n{}",
        daemon.log_text()
    );
    let new = events(&sub.all())
        .into_iter()
        .find(|m| m["type"] == "new" && m["camera"]["id"] == "cam-park-1")
        .unwrap();
    assert_eq!(new["recurrence"]["history_partial"], true, "{new:#}");
    assert!(daemon.log_text().contains("history partial"));
    sub.assert_payloads_valid();
}

/// `streetwatch cluster ARGS… --config CONFIG`: (exit code, stdout, stderr).
fn cluster_command(args: &[&str], config: &Path) -> (i32, String, String) {
    let out = Command::new(support::binary())
        .current_dir(support::root())
        .arg("cluster")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A node's config without cameras, with its city ledger if any.
fn node_text(
    node: &str,
    broker: &str,
    etcd: &[String],
    city: Option<&str>,
    console: u16,
) -> String {
    let endpoints: Vec<String> = etcd.iter().map(|e| format!("{e:?}")).collect();
    let ledger = city.map_or(String::new(), |c| format!("ledger_url = \"{c}\"\n"));
    format!(
        r#"[node]
id = "{node}"
[mqtt]
url = "{broker}"
[storage]
dir = "data-{node}"
[incidents]
end_after_seconds = 10
[change]
static_seconds = 5
[cluster]
etcd = [{endpoints}]
lease_ttl_seconds = {TTL}
capacity = 7
min_stay_seconds = 10
{ledger}[http]
listen = "127.0.0.1:{console}"
token_env = "SW_CLUSTER_TOKEN"
"#,
        endpoints = endpoints.join(", ")
    )
}

/// A node's config without cameras: they come from etcd.
fn node_config(path: &Path, node: &str, broker: &str, etcd: &[String], console: u16) {
    std::fs::write(path, node_text(node, broker, etcd, None, console)).unwrap();
}

/// One camera of the city's file: `zone` is its only zone's polygon.
fn city_camera(id: &str, clip: &Path, zone: &str) -> String {
    format!(
        r#"
# {id}: one street, one zone
[[cameras]]
id = "{id}"
url = "{clip}"
detect_every_seconds = 1.0
pace = 1.0
repeat = true
  [[cameras.zones]]
  id = "strip"
  kind = "no_parking"
  polygon = {zone}
  dwell_seconds = 5.0
  grid = "第八网格"
"#,
        clip = clip.display()
    )
}

/// Where the parked car stands.
const SOUTH: &str = "[[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]";
/// Far from it.
const NORTH: &str = "[[0.05, 0.05], [0.95, 0.05], [0.95, 0.3], [0.05, 0.3]]";

/// Waits until the cluster runs exactly `cameras` (from etcd), each on a live node.
fn wait_running(config: &Path, cameras: &[&str], timeout: Duration) -> BTreeMap<String, String> {
    let until = Instant::now() + timeout;
    let want: BTreeSet<String> = cameras.iter().map(|c| c.to_string()).collect();
    loop {
        let status = cluster_status(config);
        let got: BTreeMap<String, String> = owners(&status)
            .into_iter()
            .map(|(c, (n, _, _))| (c, n))
            .collect();
        if status["cameras_from"] == "etcd"
            && got.keys().cloned().collect::<BTreeSet<_>>() == want
            && status["unowned"].as_array().is_some_and(|u| u.is_empty())
        {
            return got;
        }
        assert!(
            Instant::now() < until,
            "the cluster does not run {want:?}: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The city's cameras and zones live in etcd: `cluster import` stores them (checked first),
/// nodes with no cameras of their own run them, a zone saved in one node's console is applied
/// by the node that runs the camera, a second import adds and removes cameras, and `cluster
/// export` gives the city's file back with the console's edit.
#[test]
fn the_citys_cameras_and_zones_live_in_etcd() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = support::artifacts_dir("cluster-catalog");
    let clips = Clips::render(&dir);
    let etcd = Etcd::start(&dir, 1);
    let broker = support::Mosquitto::start();
    let sub = Subscriber::connect(broker.port, &["streetwatch/#"]);
    let city = dir.join("city.toml");
    let consoles = [support::free_port(), support::free_port()];
    node_config(&city, "city", &broker.url(), &etcd.endpoints, consoles[0]);
    let base = std::fs::read_to_string(&city).unwrap();
    let first = [
        ("cam-park-1", &clips.parked, SOUTH),
        // The car is outside this camera's zone until the console moves the zone.
        ("cam-park-2", &clips.parked, NORTH),
        ("cam-empty-1", &clips.empty, SOUTH),
        ("cam-empty-2", &clips.empty, SOUTH),
    ];
    let mut text = base.clone();
    for (id, clip, zone) in first {
        text.push_str(&city_camera(id, clip, zone));
    }

    // Nothing in etcd yet: export says what to do.
    std::fs::write(&city, &text).unwrap();
    let (code, _, err) = cluster_command(&["export"], &city);
    assert_ne!(code, 0);
    assert!(err.contains("cluster import"), "{err}");
    // A bad zone is refused with its place in the file, and nothing is stored.
    let bad = text.replacen(SOUTH, "[[0.1, 0.1], [0.2, 0.2]]", 1);
    let bad_file = dir.join("bad-city.toml");
    std::fs::write(&bad_file, bad).unwrap();
    let (code, _, err) = cluster_command(&["import"], &bad_file);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad-city.toml:") && err.contains("polygon"),
        "{err}"
    );
    assert_ne!(cluster_command(&["export"], &city).0, 0);
    // --dry-run says what would change and changes nothing.
    let (code, out, err) = cluster_command(&["import", "--dry-run"], &city);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would be added: cam-park-1, cam-park-2, cam-empty-1, cam-empty-2"),
        "{out}"
    );
    assert_ne!(cluster_command(&["export"], &city).0, 0);
    let (code, out, err) = cluster_command(&["import"], &city);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("added: cam-park-1, cam-park-2, cam-empty-1, cam-empty-2"),
        "{out}"
    );

    // Two nodes with no cameras in their files run the city's.
    let mut daemons = Vec::new();
    for (i, node) in ["n1", "n2"].iter().enumerate() {
        let config = dir.join(format!("{node}.toml"));
        let _ = std::fs::remove_dir_all(dir.join(format!("data-{node}")));
        node_config(&config, node, &broker.url(), &etcd.endpoints, consoles[i]);
        support::add_user(&config, "admin-li", "admin", &[], "cluster-admin-pw-5d1c");
        let log = dir.join(format!("{node}.log"));
        daemons.push(Daemon::start(&config, &log, &[("SW_CLUSTER_TOKEN", TOKEN)]));
    }
    let ids: Vec<&str> = first.iter().map(|c| c.0).collect();
    wait_running(&city, &ids, Duration::from_secs(60));
    // Settled: the first node to start held every camera until the minimum stay let the
    // other take its share.
    let placed = wait_placed_of(&city, &ids, 2, Duration::from_secs(60));
    assert!(
        sub.wait_until(Duration::from_secs(60), |r| events(r)
            .iter()
            .any(|m| m["type"] == "new" && m["camera"]["id"] == "cam-park-1")),
        "cam-park-1 raised nothing:\n{}",
        daemons[0].log_text()
    );
    // 15 s of cam-park-2 running with its zone away from the car: nothing.
    std::thread::sleep(Duration::from_secs(15));
    let on = |camera: &str, r: &[Received]| -> Vec<Value> {
        events(r)
            .into_iter()
            .filter(|m| m["camera"]["id"] == camera)
            .collect()
    };
    assert!(on("cam-park-2", &sub.all()).is_empty());

    // The zone editor of the node that does not run cam-park-2 moves its zone onto the car.
    let runner = placed["cam-park-2"].0.clone();
    let other = if runner == "n1" { 1 } else { 0 };
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let body = serde_json::json!({ "zones": [{
        "id": "strip", "kind": "no_parking",
        "polygon": [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]],
        "dwell_seconds": 5.0, "grid": "第八网格",
    }]});
    let put = |port: u16, body: &Value| {
        let (code, answer) = support::curl(
            "PUT",
            &format!("http://127.0.0.1:{port}/api/cameras/cam-park-2/zones"),
            &[&bearer, "Content-Type: application/json"],
            Some(body.to_string().as_bytes()),
        );
        (
            code,
            serde_json::from_slice::<Value>(&answer).unwrap_or(Value::Null),
        )
    };
    // A zone the checks refuse is not saved.
    let mut broken = body.clone();
    broken["zones"][0]["polygon"] = serde_json::json!([[0.1, 0.1], [0.2, 0.2]]);
    let (code, answer) = put(consoles[other], &broken);
    assert_eq!(code, 422, "{answer:#}");
    assert!(
        answer["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("etcd:/streetwatch/config/cameras/cam-park-2:"),
        "{answer:#}"
    );
    let saved_at = Instant::now();
    let (code, answer) = put(consoles[other], &body);
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(
        answer["saved"],
        "etcd:/streetwatch/config/cameras/cam-park-2"
    );
    assert!(
        sub.wait_until(Duration::from_secs(40), |r| on("cam-park-2", r)
            .iter()
            .any(|m| m["type"] == "new" && m["zone"]["id"] == "strip")),
        "cam-park-2 raised nothing after its zone moved onto the car:\n{}",
        daemons[other].log_text()
    );
    println!(
        "a zone saved on {} raised an event on {runner} after {:.1} s (dwell 5 s)",
        ["n1", "n2"][other],
        saved_at.elapsed().as_secs_f64()
    );
    // Both consoles show the new zone; the camera was updated in place, not reconnected.
    for port in consoles {
        let (code, cams) = support::curl(
            "GET",
            &format!("http://127.0.0.1:{port}/api/cameras"),
            &[&bearer],
            None,
        );
        assert_eq!(code, 200);
        let cams: Value = serde_json::from_slice(&cams).unwrap();
        let cam = cams
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "cam-park-2")
            .unwrap_or_else(|| panic!("{cams:#}"));
        let y = cam["zones"][0]["polygon"][0][1].as_f64().unwrap();
        assert!((y - 0.62).abs() < 1e-6, "{cam:#}");
    }
    let runner_log = daemons[if other == 0 { 1 } else { 0 }].log_text();
    // Only the edited camera is touched, in place: the others keep their zones' state.
    assert!(
        runner_log.contains(
            "config from the cluster applied: updated [\"cam-park-2\"], stopped [], reconnected []"
        ),
        "{runner_log}"
    );

    // A second import: cam-empty-2 goes, cam-new comes.
    let mut text = base.clone();
    for (id, clip, zone) in &first[..3] {
        text.push_str(&city_camera(id, clip, zone));
    }
    text.push_str(&city_camera("cam-new", &clips.empty, SOUTH));
    std::fs::write(&city, &text).unwrap();
    let (code, out, err) = cluster_command(&["import"], &city);
    assert_eq!(code, 0, "{err}");
    // cam-park-2's text in the file still has the old zone: the import puts it back.
    assert!(out.contains("added: cam-new"), "{out}");
    assert!(out.contains("changed: cam-park-2"), "{out}");
    assert!(out.contains("removed: cam-empty-2"), "{out}");
    wait_running(
        &city,
        &["cam-park-1", "cam-park-2", "cam-empty-1", "cam-new"],
        Duration::from_secs(30),
    );

    // A camera written into etcd by hand that fails the checks: every node keeps its config in
    // force and says where the mistake is; removed, nothing changed.
    let bad = "[[cameras]]\nid = \"cam-bad\"\nurl = \"rtsp://10.0.0.9/sub\"\ndetect_every_seconds = -1.0\n";
    etcd.ctl(&["put", "/streetwatch/config/cameras/cam-bad", bad]);
    let until = Instant::now() + Duration::from_secs(15);
    while !daemons.iter().all(|d| {
        d.log_text()
            .contains("etcd:/streetwatch/config/cameras/cam-bad:4:")
    }) {
        assert!(
            Instant::now() < until,
            "a node did not refuse cam-bad:\n{}",
            daemons[0].log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The nodes run what they ran; status shows the refused camera as run by no node.
    let status = cluster_status(&city);
    let running: Vec<String> = owners(&status).into_keys().collect();
    assert_eq!(
        running,
        ["cam-empty-1", "cam-new", "cam-park-1", "cam-park-2"],
        "{status:#}"
    );
    assert_eq!(
        status["unowned"],
        serde_json::json!(["cam-bad"]),
        "{status:#}"
    );
    etcd.ctl(&["del", "/streetwatch/config/cameras/cam-bad"]);

    // Export gives the city's file back; importing it again changes nothing.
    let exported = dir.join("exported.toml");
    let _ = std::fs::remove_file(&exported);
    let (code, _, err) = cluster_command(&["export", "--out", exported.to_str().unwrap()], &city);
    assert_eq!(code, 0, "{err}");
    let back = std::fs::read_to_string(&exported).unwrap();
    assert!(
        back.contains("id = \"cam-new\"") && !back.contains("cam-empty-2"),
        "{back}"
    );
    assert!(
        back.contains("# cam-park-1: one street, one zone"),
        "comments are kept:\n{back}"
    );
    let (code, out, err) = cluster_command(&["import"], &exported);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("(4 unchanged)") && !out.contains("added") && !out.contains("changed:"),
        "{out}"
    );
    // The console's cluster page, in a browser, on the node that does not run cam-park-2.
    let shots = dir.display().to_string();
    let page = support::browser(&[
        "cluster",
        &format!("http://127.0.0.1:{}", consoles[other]),
        "admin-li",
        "cluster-admin-pw-5d1c",
        "4",
        &shots,
    ]);
    let rows: BTreeMap<String, String> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let running = wait_running(
        &city,
        &["cam-park-1", "cam-park-2", "cam-empty-1", "cam-new"],
        Duration::from_secs(5),
    );
    assert_eq!(rows, running, "{page:#}");
    assert_eq!(page["nodes"].as_array().unwrap().len(), 2, "{page:#}");
    assert!(
        page["summary"].as_str().unwrap().contains("from etcd"),
        "{page:#}"
    );
    // Its zone editor has no picture of cam-park-2, and says which node has, with a link.
    let away = support::browser(&[
        "away",
        &format!("http://127.0.0.1:{}", consoles[other]),
        "cam-park-2",
        "admin-li",
        "cluster-admin-pw-5d1c",
        &shots,
    ]);
    assert_eq!(away["camera"], "cam-park-2", "{away:#}");
    let info = away["info"].as_str().unwrap();
    assert!(
        info.contains(&format!("node {runner} runs this camera")),
        "{away:#}"
    );
    let runner_console = consoles[if other == 0 { 1 } else { 0 }];
    assert_eq!(
        away["link"],
        format!("http://127.0.0.1:{runner_console}/zones?camera=cam-park-2"),
        "{away:#}"
    );
    // Every payload is valid.
    drop(daemons);
    sub.assert_payloads_valid();
}

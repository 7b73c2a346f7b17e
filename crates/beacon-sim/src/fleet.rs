//! The simulated fleet: servers on release lines that are adopted over the days, mobile devices of
//! several classes on app releases (one of which regresses a trace), and the code paths errors come
//! from. Everything is drawn from one seeded RNG, so a seed gives the same fleet and the same traffic.

use beacon_wire::mobile::{DeviceInfo, TraceName};
use beacon_wire::security::SecurityCheck;
use rand::RngExt;
use rand::rngs::StdRng;

/// A server release: version and the simulated day it ships (negative: before the run starts).
#[derive(Debug, Clone)]
pub struct Release {
    pub version: semver::Version,
    pub day: i64,
    /// Extended-support line: its servers upgrade slowly.
    pub esr: bool,
}

pub fn server_releases(days: u32) -> Vec<Release> {
    let d = i64::from(days);
    let r = |v: &str, day: i64, esr: bool| Release {
        version: semver::Version::parse(v).expect("static version"),
        day,
        esr,
    };
    vec![
        r("9.11.6", -300, true),
        r("10.0.3", -150, false),
        r("10.1.2", -60, false),
        r("10.2.0", d * 3 / 10, false),
        r("10.2.1", d * 7 / 10, false),
    ]
}

/// App releases; the last one makes `channel:switch_loaded` 30 % slower.
pub fn app_releases(days: u32) -> Vec<(String, i64)> {
    let d = i64::from(days);
    vec![
        ("2.20.0".into(), -90),
        ("2.21.0".into(), d * 2 / 5),
        ("2.22.0".into(), d * 3 / 4),
    ]
}

/// The trace that the newest app release makes slower, and by how much.
pub const REGRESSED: (TraceName, f64) = (TraceName::ChannelSwitchLoaded, 1.3);

#[derive(Debug, Clone)]
pub struct Server {
    pub id: String,
    pub release: usize,
    pub enterprise: bool,
    pub os: &'static str,
    pub db: &'static str,
    pub db_version: &'static str,
    pub teams: i64,
    pub users: i64,
    pub activated: i64,
    pub test_install: bool,
    pub joins: u32,
    pub leaves: u32,
    /// The simulated day it last changed release (for error bursts after upgrades).
    pub upgraded_on: Option<u32>,
}

impl Server {
    pub fn active(&self, day: u32) -> bool {
        day >= self.joins && day < self.leaves
    }

    pub fn check(&self, releases: &[Release], last_check_ms: Option<i64>) -> SecurityCheck {
        SecurityCheck {
            server_id: self.id.clone(),
            version: releases[self.release].version.clone(),
            build: Some(format!("{}", 20_000 + self.release)),
            enterprise: self.enterprise,
            os: self.os.into(),
            db: self.db.into(),
            db_version: Some(self.db_version.into()),
            teams: Some(self.teams),
            users: Some(self.users),
            activated_users: Some(self.activated),
            unit_tests: self.test_install,
            last_check_ms,
        }
    }
}

/// A 26-char diagnostic id `[a-z0-9]`, as the agent makes one.
pub fn diagnostic_id(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..26)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A count with a long tail: most small, a few very large.
fn long_tail(rng: &mut StdRng, scale: f64, max: f64) -> i64 {
    let u: f64 = rng.random::<f64>().max(1e-9);
    (scale / u.powf(0.8)).min(max) as i64
}

fn pick<T: Copy>(rng: &mut StdRng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|w| w.1).sum();
    let mut n = rng.random_range(0..total);
    for (v, w) in weighted {
        if n < *w {
            return *v;
        }
        n -= w;
    }
    weighted[0].0
}

pub fn servers(rng: &mut StdRng, n: u32, days: u32, releases: &[Release]) -> Vec<Server> {
    (0..n)
        .map(|_| {
            let (db, db_version) = pick(
                rng,
                &[
                    (("postgres", "14.11"), 50),
                    (("postgres", "16.2"), 30),
                    (("mysql", "8.0.36"), 20),
                ],
            );
            let teams = 1 + long_tail(rng, 1.0, 400.0);
            let users = (teams * 8 + long_tail(rng, 10.0, 50_000.0)).max(1);
            let joins = if rng.random::<f64>() < 0.85 {
                0
            } else {
                rng.random_range(0..days.max(1))
            };
            let leaves = if rng.random::<f64>() < 0.03 {
                rng.random_range(joins..=days)
            } else {
                days
            };
            // Where a server starts: among the releases shipped before the run, newer more likely.
            let release = pick(rng, &[(0usize, 20), (1, 25), (2, 55)]);
            let release = if releases[release].day > 0 {
                0
            } else {
                release
            };
            Server {
                id: diagnostic_id(rng),
                release,
                enterprise: rng.random::<f64>() < 0.4,
                os: pick(rng, &[("linux", 92), ("windows", 5), ("darwin", 3)]),
                db,
                db_version,
                teams,
                users,
                activated: (users as f64 * rng.random_range(0.4..0.95)) as i64,
                test_install: rng.random::<f64>() < 0.02,
                joins,
                leaves,
                upgraded_on: None,
            }
        })
        .collect()
}

/// Moves servers to the newest shipped release with a daily probability (ESR servers rarely).
pub fn adopt(rng: &mut StdRng, servers: &mut [Server], releases: &[Release], day: u32) {
    let newest = releases
        .iter()
        .rposition(|r| r.day <= i64::from(day))
        .unwrap_or(0);
    for s in servers.iter_mut() {
        if s.release >= newest {
            continue;
        }
        let since = i64::from(day) - releases[newest].day;
        let p = if releases[s.release].esr {
            0.01
        } else {
            (0.03 + 0.01 * since as f64).min(0.15)
        };
        if rng.random::<f64>() < p {
            s.release = newest;
            s.upgraded_on = Some(day);
        }
    }
}

/// (manufacturer, model, tablet, speed factor: 1.0 is a typical phone)
const MODELS: &[(&str, &str, bool, f64)] = &[
    ("Google", "Pixel 8", false, 0.8),
    ("Google", "Pixel 6a", false, 1.1),
    ("samsung", "SM-S918B", false, 0.8),
    ("samsung", "SM-A546B", false, 1.3),
    ("samsung", "SM-X710", true, 1.0),
    ("Xiaomi", "23049PCD8G", false, 1.2),
    ("motorola", "moto g54 5G", false, 1.6),
    ("Apple", "iPhone15,2", false, 0.7),
    ("Apple", "iPhone12,1", false, 1.0),
    ("Apple", "iPad13,4", true, 0.8),
];
const COUNTRIES: &[(&str, u32)] = &[
    ("US", 30),
    ("DE", 15),
    ("BR", 10),
    ("IN", 10),
    ("FR", 8),
    ("GB", 8),
    ("JP", 6),
    ("PL", 5),
    ("CA", 4),
    ("AU", 4),
];

#[derive(Debug, Clone)]
pub struct Device {
    pub unique_id: String,
    pub model: usize,
    pub country: &'static str,
    pub app: usize,
    pub emulator: bool,
    pub server: usize,
}

pub fn devices(rng: &mut StdRng, n: u32, servers: usize) -> Vec<Device> {
    (0..n)
        .map(|_| Device {
            unique_id: format!("{:032x}", rng.random::<u128>()),
            model: rng.random_range(0..MODELS.len()),
            country: pick(rng, COUNTRIES),
            app: 0,
            emulator: rng.random::<f64>() < 0.01,
            server: rng.random_range(0..servers.max(1)),
        })
        .collect()
}

pub fn adopt_app(rng: &mut StdRng, devices: &mut [Device], apps: &[(String, i64)], day: u32) {
    let newest = apps
        .iter()
        .rposition(|a| a.1 <= i64::from(day))
        .unwrap_or(0);
    for d in devices.iter_mut() {
        if d.app < newest && rng.random::<f64>() < 0.2 {
            d.app = newest;
        }
    }
}

impl Device {
    pub fn info(&self, apps: &[(String, i64)], server_version: &str) -> DeviceInfo {
        let (manufacturer, model, tablet, _) = MODELS[self.model];
        let ios = manufacturer == "Apple";
        let s = |v: &str| Some(v.to_string());
        DeviceInfo {
            api_level: (!ios).then_some(34),
            brand: s(manufacturer),
            build_number: s("612"),
            bundle_id: s("com.mattermost.rn"),
            country: s(self.country),
            device_id: s(model),
            device_locale: s("en-US"),
            device_type: s(if tablet { "Tablet" } else { "Handset" }),
            device_unique_id: Some(self.unique_id.clone()),
            height: Some(if tablet { 1280.0 } else { 915.0 }),
            is_emulator: Some(self.emulator),
            is_tablet: Some(tablet),
            manufacturer: s(manufacturer),
            max_memory: Some(536_870_912.0),
            model: s(model),
            server_version: s(server_version),
            system_name: s(if ios { "iOS" } else { "Android" }),
            system_version: s(if ios { "17.4" } else { "14" }),
            timezone: s("UTC"),
            version: s(&apps[self.app].0),
            width: Some(if tablet { 800.0 } else { 412.0 }),
        }
    }

    /// A duration for `trace` on this device and app release, in µs.
    pub fn duration(&self, rng: &mut StdRng, trace: TraceName, apps: &[(String, i64)]) -> i64 {
        let base = match trace {
            TraceName::StartOverall => 1_800_000.0,
            TraceName::StartContentAppeared => 900_000.0,
            TraceName::StartChannelScreen => 1_200_000.0,
            TraceName::PostsLoading => 600_000.0,
            TraceName::ChannelLoading => 500_000.0,
            TraceName::TeamSwitch => 350_000.0,
            TraceName::ChannelSwitchLoaded => 300_000.0,
            TraceName::ChannelCloseDrawer | TraceName::ChannelOpenDrawer => 85_000.0,
            _ => 250_000.0,
        };
        let regress = if trace == REGRESSED.0 && self.app + 1 == apps.len() {
            REGRESSED.1
        } else {
            1.0
        };
        let noise = (rng.random::<f64>() * 1.2 - 0.4).exp();
        ((base * MODELS[self.model].3 * regress * noise) as i64).max(1)
    }
}

/// Code paths errors come from: (exception type, message, module, function, file).
pub const CODE_PATHS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "DatabaseError",
        "pq: deadlock detected",
        "app.store.post",
        "save_post",
        "post_store.rs",
    ),
    (
        "TimeoutError",
        "request to plugin timed out after 30s",
        "app.plugins",
        "call_hook",
        "hooks.rs",
    ),
    (
        "PermissionError",
        "channel 4f1c… not readable by user",
        "app.channels",
        "check_access",
        "access.rs",
    ),
    (
        "ParseError",
        "invalid markdown table at offset 1184",
        "app.markdown",
        "render_table",
        "table.rs",
    ),
    (
        "PanicError",
        "index out of bounds: the len is 3 but the index is 7",
        "app.search",
        "rank_results",
        "rank.rs",
    ),
];

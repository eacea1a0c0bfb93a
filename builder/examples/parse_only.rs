//! Parses Dockerfiles without printing the AST (the parser's share of
//! `bench/parse.sh`): `parse_only FILE [ROUNDS]` prints the instruction count
//! and, per round, the median and best wall time and the median CPU time.
//!
//! CPU time is the process's time on a CPU (user and kernel, every thread:
//! the parser reads a large file on two threads), from `getrusage`; other
//! processes competing for the CPUs lengthen the wall time but not this.
//!
//! It allocates with mimalloc, as the `berth` binary does, so that the
//! parser is measured with the allocator it runs with there.

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The process's time on a CPU so far, in seconds, or `None` if the
/// system does not tell.
fn cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: parse_only FILE [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let mut wall = Vec::with_capacity(rounds);
    let mut cpu = Vec::with_capacity(rounds);
    let mut count = 0;
    for _ in 0..rounds.max(1) {
        let cpu_start = cpu_seconds();
        let start = Instant::now();
        let parsed = berth_builder::dockerfile::parse_bytes(&bytes, "Dockerfile");
        // Freeing the AST is not part of parsing: stop the clocks first.
        wall.push(start.elapsed().as_secs_f64());
        if let (Some(before), Some(after)) = (cpu_start, cpu_seconds()) {
            cpu.push(after - before);
        }
        match parsed {
            Ok(df) => count = df.instructions.len(),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    let mb = bytes.len() as f64 / 1e6;
    let best = wall.iter().copied().fold(f64::INFINITY, f64::min);
    let median_wall = median(&mut wall);
    print!(
        "instructions={count} bytes={} median_s={median_wall:.4} median_mb_s={:.1} best_mb_s={:.1}",
        bytes.len(),
        mb / median_wall,
        mb / best
    );
    if cpu.len() == wall.len() {
        let median_cpu = median(&mut cpu);
        print!(
            " median_cpu_s={median_cpu:.4} median_cpu_mb_s={:.1}",
            mb / median_cpu
        );
    }
    println!();
}

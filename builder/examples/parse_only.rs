//! Parses Dockerfiles without printing the AST (the parser's share of
//! `bench/parse.sh`): `parse_only FILE [ROUNDS]` prints the instruction count
//! and the best and median time per round.

use std::time::Instant;

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
    let mut times = Vec::with_capacity(rounds);
    let mut count = 0;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let parsed = berth_builder::dockerfile::parse_bytes(&bytes, "Dockerfile");
        // Freeing the AST is not part of parsing: stop the clock first.
        times.push(start.elapsed().as_secs_f64());
        match parsed {
            Ok(df) => count = df.instructions.len(),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let mb = bytes.len() as f64 / 1e6;
    println!(
        "instructions={count} bytes={} median_s={median:.4} median_mb_s={:.1} best_mb_s={:.1}",
        bytes.len(),
        mb / median,
        mb / times[0]
    );
}

//! `switchyard-policy check FILE...`: validates filter policies with the same rules the filter
//! applies in Envoy, before they are deployed. Exits non-zero listing every problem.

use std::process::ExitCode;

use switchyard_policy::Config;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(("check", files)) = args.split_first().map(|(c, f)| (c.as_str(), f)) else {
        eprintln!("usage: switchyard-policy check POLICY.json...");
        return ExitCode::from(2);
    };
    if files.is_empty() {
        eprintln!("usage: switchyard-policy check POLICY.json...");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for f in files {
        match std::fs::read(f).map_err(|e| e.to_string()).and_then(|b| Config::parse(&b).map_err(|e| e.to_string())) {
            Ok(c) => println!("ok  {f}: {} model(s)", c.models.len()),
            Err(e) => {
                ok = false;
                eprintln!("{f}: {e}");
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

//! The `wechat-mock` binary: serves the fake WeChat (API, consent pages and the `/mock/*`
//! control API) on one address until Ctrl-C.
//!
//! ```text
//! wechat-mock [--bind ADDR] [--appid ID] [--secret SECRET] [--frozen-clock]
//! ```
//!
//! The first line on stdout is `listening on http://ADDR` with the bound address.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    process::ExitCode,
};

use wechat_mock::{MockConfig, MockWeChat};

const USAGE: &str = "\
usage: wechat-mock [--bind ADDR] [--appid ID] [--secret SECRET] [--frozen-clock]

A fake of WeChat's OAuth servers for tests and local development.

options:
  --bind ADDR       address to listen on (default 127.0.0.1:0, an ephemeral port)
  --appid ID        the AppID the mock accepts (default wxmockappid000001)
  --secret SECRET   the AppSecret the mock accepts (default mocksecret0123456789abcdef0123456)
  --frozen-clock    the clock moves only through POST /mock/clock/advance (default: it also
                    follows real time, so codes and tokens expire as at WeChat)
  -h, --help        print this help

The first line on stdout is `listening on http://ADDR`. Control API: POST /mock/codes,
POST /mock/clock/advance, GET /mock/stats, POST|DELETE /mock/faults,
POST /mock/users/{openid}/revoke, PUT /mock/users/{openid}/profile.
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Serve {
        bind: SocketAddr,
        config: MockConfig,
    },
}

/// Parses the arguments after the program name; `Err` is a message for stderr.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut config = MockConfig {
        real_time: true,
        ..MockConfig::default()
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        if flag == "--frozen-clock" && inline.is_none() {
            config.real_time = false;
            continue;
        }
        if !matches!(flag.as_str(), "--bind" | "--appid" | "--secret") {
            return Err(format!("unknown argument {flag:?}"));
        }
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--bind" => {
                bind = value.parse().map_err(|_| {
                    format!("--bind {value:?} is not an address like 127.0.0.1:8080")
                })?;
            }
            "--appid" => config.appid = value,
            _ => config.secret = value,
        }
    }
    Ok(Command::Serve { bind, config })
}

/// Waits for Ctrl-C (or SIGTERM on Unix).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (bind, config) = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Serve { bind, config }) => (bind, config),
        Err(message) => {
            eprintln!("wechat-mock: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mock = match MockWeChat::start_on(config, bind).await {
        Ok(mock) => mock,
        Err(error) => {
            eprintln!("wechat-mock: cannot listen on {bind}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let printed = writeln!(stdout, "listening on {}", mock.base_url())
        .and_then(|()| writeln!(stdout, "appid: {}", mock.appid()))
        .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(error) = printed {
        eprintln!("wechat-mock: cannot write to stdout: {error}");
        return ExitCode::FAILURE;
    }
    shutdown_signal().await;
    eprintln!("wechat-mock: shutting down");
    mock.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn defaults_to_an_ephemeral_localhost_port() {
        assert_eq!(
            parse(&[]),
            Ok(Command::Serve {
                bind: "127.0.0.1:0".parse().unwrap(),
                config: MockConfig {
                    real_time: true,
                    ..MockConfig::default()
                },
            })
        );
    }

    #[test]
    fn reads_all_three_flags_in_both_spellings() {
        let Ok(Command::Serve { bind, config }) =
            parse(&["--bind", "0.0.0.0:8080", "--appid=wxabc", "--secret", "s3"])
        else {
            panic!("expected serve");
        };
        assert_eq!(bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            config,
            MockConfig {
                real_time: true,
                ..MockConfig::new("wxabc", "s3")
            }
        );
        let Ok(Command::Serve { config, .. }) = parse(&["--frozen-clock"]) else {
            panic!("expected serve");
        };
        assert!(!config.real_time);
    }

    #[test]
    fn help_unknown_and_missing_values() {
        assert_eq!(parse(&["--appid", "x", "--help"]), Ok(Command::Help));
        assert_eq!(parse(&["-h"]), Ok(Command::Help));
        assert!(parse(&["--verbose"]).is_err());
        assert!(parse(&["serve"]).is_err());
        assert!(parse(&["--bind"]).is_err());
        assert!(parse(&["--bind", "localhost"]).is_err());
    }
}

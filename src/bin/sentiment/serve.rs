//! `sentiment serve`: load the model, bind, say so on stderr, and serve
//! until SIGTERM or Ctrl-C, then finish the requests in flight and exit 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sentiment::serve::{Server, ServerConfig};
use sentiment::ClassifyOptions;

use crate::args::{ModelArgs, ServeArgs};
use crate::exit::{diagnostic, UsageError};

pub fn run(model: &ModelArgs, args: &ServeArgs) -> Result<u8> {
    if args.api_key.as_deref().is_some_and(str::is_empty) {
        return Err(UsageError("--api-key (or SENTIMENT_API_KEY) is empty".into()).into());
    }
    // A client's bearer token is read without surrounding whitespace, so a
    // key with some could never match: refused rather than unusable.
    if args.api_key.as_deref().is_some_and(|key| key.trim() != key) {
        return Err(UsageError(
            "--api-key (or SENTIMENT_API_KEY) starts or ends with whitespace, so no request \
             could ever match it; remove the whitespace"
                .into(),
        )
        .into());
    }
    let options = ClassifyOptions::default().with_long_text(args.long_text.mode()?);
    let classifier = Arc::new(crate::load::classifier(model, &options)?);
    let mut config = ServerConfig::default().with_model_id(classifier.name());
    config.options = options;
    config.max_batch_tokens = args.max_batch_tokens as usize;
    config.max_batch_requests = args.max_batch_requests as usize;
    config.max_concurrent_requests = args.max_concurrent_requests as usize;
    config.max_client_batch_size = args.max_client_batch_size as usize;
    config.max_request_tokens = args.max_request_tokens as usize;
    config.max_connections = connection_limit(args.max_connections as usize);
    config.header_timeout = Duration::from_secs(args.header_timeout);
    config.shutdown_deadline = Duration::from_secs(args.shutdown_timeout);
    config.payload_limit = usize::try_from(args.payload_limit).unwrap_or(usize::MAX);
    config.request_timeout = Duration::from_secs(args.request_timeout);
    config.api_key = args.api_key.clone();

    // Two async threads are plenty: handlers only parse, queue and wait;
    // tokenization runs on the blocking pool and the model on its own thread.
    // The blocking pool is capped too: each thread that allocates gets its
    // own malloc arena, and hundreds of them doubled the RSS under load.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        let address = (args.host.as_str(), args.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let local = listener
            .local_addr()
            .context("cannot read the bound address")?;
        diagnostic(format_args!(
            "listening on http://{local} ({}, {})",
            classifier.name(),
            classifier.precision()
        ));
        Server::new(classifier, config)
            .run(listener, shutdown_signal())
            .await
            .context("the server failed")?;
        diagnostic("stopped");
        Ok(0)
    });
    // A tokenization still running on the blocking pool is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Descriptors kept back from connections: the listener, the model and
/// tokenizer files, stdio, the runtime's own.
const RESERVED_DESCRIPTORS: usize = 64;

/// `asked`, lowered to stay under the open-file limit: past it, accept
/// fails and the server is unreachable until connections close.
fn connection_limit(asked: usize) -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            let open_files = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
            let room = open_files.saturating_sub(RESERVED_DESCRIPTORS).max(1);
            if asked > room {
                diagnostic(format_args!(
                    "warning: --max-connections {asked} is over what the open-file limit \
                     ({open_files}) allows; serving at most {room} connections"
                ));
                return room;
            }
        }
    }
    asked
}

/// Ctrl-C or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

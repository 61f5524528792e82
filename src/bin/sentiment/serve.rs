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
    runtime.block_on(async {
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
        diagnostic("stopped: every request in flight was answered");
        Ok(0)
    })
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

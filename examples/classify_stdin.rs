//! Embedding `sentiment`: classify stdin, one text per line, on 4 threads
//! that share one loaded model, and print JSON lines in input order.
//!
//!     cargo run --release --example classify_stdin < reviews.txt
//!
//! Each worker takes every 4th line, so the model is used from four threads
//! at once: `Classifier` is `Send + Sync` and `classify` takes `&self`.

use std::io::{BufRead, Write};

use sentiment::{Classifier, ClassifyOptions};

const WORKERS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The bundled model on the CPU. The thread count is process-wide; each
    // worker's forward passes share it.
    let classifier = Classifier::builder().threads(2).build()?;
    let lines: Vec<String> = std::io::stdin().lock().lines().collect::<Result<_, _>>()?;
    let options = ClassifyOptions::default().with_top_k(Some(1));

    let mut results = vec![None; lines.len()];
    std::thread::scope(|scope| -> Result<(), sentiment::Error> {
        let workers: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let (classifier, lines) = (&classifier, &lines);
                scope.spawn(move || {
                    let mine: Vec<(usize, &str)> = lines
                        .iter()
                        .enumerate()
                        .skip(worker)
                        .step_by(WORKERS)
                        .map(|(i, line)| (i, line.as_str()))
                        .collect();
                    let texts: Vec<&str> = mine.iter().map(|(_, text)| *text).collect();
                    let predictions = classifier.classify(&texts, &options)?;
                    Ok::<_, sentiment::Error>(
                        mine.into_iter()
                            .map(|(i, _)| i)
                            .zip(predictions)
                            .collect::<Vec<_>>(),
                    )
                })
            })
            .collect();
        for worker in workers {
            for (i, prediction) in worker.join().expect("worker panicked")? {
                results[i] = Some(prediction);
            }
        }
        Ok(())
    })?;

    let mut out = std::io::stdout().lock();
    for (text, prediction) in lines.iter().zip(results.into_iter().flatten()) {
        writeln!(out, "{}", sentiment::output::text_record(text, &prediction))?;
    }
    Ok(())
}

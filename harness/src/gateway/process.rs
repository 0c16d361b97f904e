//! Running the gateway under test: its configuration rendered from a template, its command
//! started in a process group of its own with its output kept, its death noticed, and the whole
//! group stopped at the end (also when the harness fails).
//!
//! Placeholders, in the command and the template: `{dir}` (a fresh directory for the gateway's
//! files and output), `{config}` (the rendered template's path), `{port}` (the port of
//! `--target`), `{node_urls}` and `{node_hostports}` (space-separated). A template line holding
//! `{node_url}`, `{node_hostport}` or `{node_index}` is repeated once per node with that node's
//! values, so an nginx `server` line or an HAProxy `server` line is written once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

/// What the placeholders stand for.
#[derive(Debug, Clone)]
pub struct Bindings {
    /// The gateway's directory.
    pub dir: PathBuf,
    /// The port the gateway listens on.
    pub port: u16,
    /// Node URLs (`http://127.0.0.1:21434`).
    pub node_urls: Vec<String>,
}

impl Bindings {
    fn hostport(url: &str) -> &str {
        url.trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("gateway.conf")
    }

    /// `text` with every placeholder filled in.
    pub fn render(&self, text: &str) -> String {
        let hostports: Vec<&str> = self.node_urls.iter().map(|u| Self::hostport(u)).collect();
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            if ["{node_url}", "{node_hostport}", "{node_index}"]
                .iter()
                .any(|p| line.contains(p))
            {
                for (i, url) in self.node_urls.iter().enumerate() {
                    out.push_str(
                        &line
                            .replace("{node_url}", url)
                            .replace("{node_hostport}", Self::hostport(url))
                            .replace("{node_index}", &i.to_string()),
                    );
                }
                continue;
            }
            out.push_str(line);
        }
        out.replace("{dir}", &self.dir.display().to_string())
            .replace("{config}", &self.config_path().display().to_string())
            .replace("{port}", &self.port.to_string())
            .replace("{node_urls}", &self.node_urls.join(" "))
            .replace("{node_hostports}", &hostports.join(" "))
    }
}

/// Starts `command` with `sh -c` in a process group of its own (so stopping the group reaches
/// every process it forks: nginx's workers, a Python program's), with `vars` added to its
/// environment and its stdout and stderr going to `log`.
pub fn sh_in_group(
    command: &str,
    vars: &[(String, String)],
    log: fs::File,
) -> std::io::Result<Child> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    cmd.spawn()
}

/// A running gateway; stopped (its whole process group) when dropped.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    output: PathBuf,
}

impl Gateway {
    /// Renders `template` (if any) to `{config}`, then starts `command` with `sh -c` in a new
    /// process group, its stdout and stderr going to `{dir}/gateway.log`.
    pub fn start(
        command: &str,
        template: Option<&Path>,
        bindings: &Bindings,
    ) -> anyhow::Result<Self> {
        fs::create_dir_all(&bindings.dir)
            .with_context(|| format!("creating {}", bindings.dir.display()))?;
        if let Some(template) = template {
            let text = fs::read_to_string(template)
                .with_context(|| format!("reading the config template {}", template.display()))?;
            fs::write(bindings.config_path(), bindings.render(&text))
                .context("writing the rendered config")?;
        }
        let output = bindings.dir.join("gateway.log");
        let log = fs::File::create(&output).context("creating the gateway's log")?;
        let command = bindings.render(command);
        let child = Self::spawn(&command, log)
            .with_context(|| format!("starting the gateway: {command}"))?;
        Ok(Self { child, output })
    }

    fn spawn(command: &str, log: fs::File) -> std::io::Result<Child> {
        sh_in_group(command, &[], log)
    }

    /// The last `lines` lines of the gateway's output.
    pub fn last_output(&self, lines: usize) -> String {
        crate::client::tail(&self.output, lines)
    }

    /// An error if the gateway has exited, with its status and last output.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => anyhow::bail!(
                "the gateway exited ({status}); its last output:\n{}",
                self.last_output(20)
            ),
            Ok(None) => Ok(()),
            Err(e) => anyhow::bail!("cannot check the gateway: {e}"),
        }
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.output
    }

    /// The process group's id (the shell's pid).
    pub fn group(&self) -> u32 {
        self.child.id()
    }

    /// Stops the gateway's group and exits 130 on Ctrl-C: the gateway runs in a group of its
    /// own, so the terminal's interrupt would not reach it, and it would outlive the harness.
    pub fn stop_on_ctrl_c(&self) {
        #[cfg(unix)]
        {
            let group = self.child.id() as i32;
            std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
                    use nix::sys::signal::{Signal, killpg};
                    let _ = killpg(nix::unistd::Pid::from_raw(group), Signal::SIGTERM);
                    std::process::exit(130);
                }
            });
        }
    }

    fn stop(&mut self) {
        #[cfg(unix)]
        {
            use nix::sys::signal::{Signal, killpg};
            use nix::unistd::Pid;
            let group = Pid::from_raw(self.child.id() as i32);
            let _ = killpg(group, Signal::SIGTERM);
            for _ in 0..50 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            // Whatever is left of the group (a worker that ignored SIGTERM) is killed.
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bindings() -> Bindings {
        Bindings {
            dir: PathBuf::from("/tmp/g"),
            port: 8080,
            node_urls: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
        }
    }

    #[test]
    fn node_lines_repeat_and_placeholders_fill() {
        let text = "listen {port};\n    server n{node_index} {node_hostport};\n# {node_urls}\npid {dir}/pid; conf {config}\n";
        assert_eq!(
            bindings().render(text),
            "listen 8080;\n    server n0 127.0.0.1:1;\n    server n1 127.0.0.1:2;\n# http://127.0.0.1:1 http://127.0.0.1:2\npid /tmp/g/pid; conf /tmp/g/gateway.conf\n"
        );
    }
}

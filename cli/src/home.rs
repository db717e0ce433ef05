//! Local files (a counselor's or administrator's encrypted key store) and
//! reading secrets (passphrases, codenames) from a prompt or standard input —
//! never from the command line, where they would land in shell history and
//! `ps`.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use northstar_core::state::{KeyStore, StateKey, StateKind};
use zeroize::Zeroizing;

/// A client's home directory: `keystore` (the state key, under the
/// passphrase, Argon2id) and `state` (everything else, under the state key).
pub struct Home {
    dir: PathBuf,
}

/// Lines read from standard input, in order: the first secret, then the
/// message text (when not given with `--message`).
pub struct Input {
    lines: Option<std::vec::IntoIter<Zeroizing<String>>>,
}

impl Input {
    pub fn new() -> Self {
        Input { lines: None }
    }

    /// Standard input, read once, as lines zeroized when dropped.
    fn piped(&mut self) -> Result<&mut std::vec::IntoIter<Zeroizing<String>>> {
        if let Some(ref mut lines) = self.lines {
            return Ok(lines);
        }
        let mut all = Zeroizing::new(String::new());
        io::stdin()
            .lock()
            .read_to_string(&mut all)
            .context("cannot read standard input")?;
        let v: Vec<Zeroizing<String>> = all.lines().map(|l| Zeroizing::new(l.to_owned())).collect();
        Ok(self.lines.insert(v.into_iter()))
    }

    /// A secret: from a hidden prompt on a terminal, else the next stdin line.
    pub fn secret(&mut self, prompt: &str) -> Result<Zeroizing<String>> {
        if io::stdin().is_terminal() {
            let s = rpassword::prompt_password(prompt).context("cannot read from the terminal")?;
            return Ok(Zeroizing::new(s));
        }
        match self.piped()?.next() {
            Some(line) => Ok(line),
            None => bail!(
                "expected {} on standard input",
                prompt.trim_end_matches([':', ' '])
            ),
        }
    }

    /// A visible answer (a confirmation): typed after a prompt on a
    /// terminal, else the next line of standard input.
    pub fn line(&mut self, prompt: &str) -> Result<Zeroizing<String>> {
        if io::stdin().is_terminal() {
            eprint!("{prompt}");
            io::stderr().flush()?;
            let mut s = Zeroizing::new(String::new());
            io::stdin()
                .read_line(&mut s)
                .context("cannot read from the terminal")?;
            return Ok(s);
        }
        Ok(self
            .piped()?
            .next()
            .unwrap_or_else(|| Zeroizing::new(String::new())))
    }

    /// The message text: the given one, or the rest of standard input.
    pub fn message(&mut self, given: Option<String>) -> Result<String> {
        if let Some(m) = given {
            return Ok(m);
        }
        if io::stdin().is_terminal() {
            eprintln!("Type the message, then Ctrl-D:");
            let mut s = String::new();
            io::stdin().lock().read_to_string(&mut s)?;
            return Ok(s.trim_end().to_owned());
        }
        let rest: Vec<Zeroizing<String>> = self.piped()?.collect();
        let text = rest
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_owned();
        if text.is_empty() {
            bail!("no message given (use --message or standard input)");
        }
        Ok(text)
    }
}

impl Home {
    pub fn new(dir: PathBuf) -> Self {
        Home { dir }
    }

    fn keystore_path(&self) -> PathBuf {
        self.dir.join("keystore")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn exists(&self) -> bool {
        self.keystore_path().exists()
    }

    /// Creates the home with a new state key under `passphrase`.
    pub fn create(
        &self,
        passphrase: &[u8],
        kind: StateKind,
        state: &[u8],
        rng: &mut impl northstar_core::CryptoRng,
    ) -> Result<StateKey> {
        let key = self.create_key_store(passphrase, rng)?;
        self.save(&key, kind, state, rng)?;
        Ok(key)
    }

    /// Creates the home's key store (a new state key under `passphrase`);
    /// the caller then writes the first state.
    pub fn create_key_store(
        &self,
        passphrase: &[u8],
        rng: &mut impl northstar_core::CryptoRng,
    ) -> Result<StateKey> {
        if self.exists() {
            bail!(
                "{} already holds keys; use another --home or remove it first",
                self.dir.display()
            );
        }
        create_private_dir(&self.dir)?;
        let key = StateKey::generate(rng);
        let store = KeyStore::seal(passphrase, key.as_bytes(), rng)
            .map_err(|e| anyhow::anyhow!("cannot seal the key store: {e}"))?;
        write_private(&self.keystore_path(), &store)?;
        Ok(key)
    }

    /// Opens the state key with the passphrase.
    pub fn unlock(&self, passphrase: &[u8]) -> Result<StateKey> {
        let bytes = fs::read(self.keystore_path()).with_context(|| {
            format!(
                "no keys in {} (run the init command first)",
                self.dir.display()
            )
        })?;
        let plain = KeyStore::open(passphrase, &bytes)
            .map_err(|_| anyhow::anyhow!("wrong passphrase (or a damaged key store)"))?;
        let arr: [u8; 32] = plain
            .as_slice()
            .try_into()
            .context("the key store holds an unexpected key")?;
        Ok(StateKey::from_bytes(Zeroizing::new(arr)))
    }

    /// Reads and decrypts the state.
    pub fn load(&self, key: &StateKey, kind: StateKind) -> Result<Zeroizing<Vec<u8>>> {
        let bytes = fs::read(self.state_path()).context("cannot read the saved state")?;
        key.open(kind, &bytes)
            .map_err(|_| anyhow::anyhow!("the saved state does not open with this key store"))
    }

    /// Encrypts and writes the state atomically (write to a temporary file,
    /// then rename), so a crash never leaves half a state.
    pub fn save(
        &self,
        key: &StateKey,
        kind: StateKind,
        state: &[u8],
        rng: &mut impl northstar_core::CryptoRng,
    ) -> Result<()> {
        let blob = key
            .seal(kind, state, rng)
            .map_err(|e| anyhow::anyhow!("cannot encrypt the state: {e}"))?;
        self.write_sealed(&blob)
    }

    /// Writes an already sealed state atomically (a temporary file, then a
    /// rename), so a crash never leaves half a state.
    pub fn write_sealed(&self, sealed: &[u8]) -> Result<()> {
        let tmp = self.dir.join("state.tmp");
        write_private(&tmp, sealed)?;
        fs::rename(&tmp, self.state_path()).context("cannot replace the saved state")?;
        Ok(())
    }

    fn read_sealed(&self) -> Result<Vec<u8>> {
        fs::read(self.state_path()).context("cannot read the saved state")
    }

    /// Opens the device's sealed state file under the home's lock, held
    /// until [`DeviceFile::release`] (or the process ends).
    pub fn device_file(self) -> Result<(DeviceFile, Vec<u8>)> {
        let mut opts = fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let lock = opts
            .open(self.dir.join("lock"))
            .context("cannot open the device lock file")?;
        let mut f = DeviceFile {
            home: self,
            lock,
            locked: false,
            hold: true,
            last: Vec::new(),
        };
        f.lock()?;
        let sealed = f.home.read_sealed()?;
        f.last.clone_from(&sealed);
        Ok((f, sealed))
    }
}

/// A counselor device's sealed state file and the lock that keeps two
/// processes (a `watch` and a `claim`, say) from overwriting each other:
/// whoever changes the state holds the lock from reading it to saving it,
/// and a process that held no lock meanwhile reloads the newer copy first.
pub struct DeviceFile {
    home: Home,
    lock: fs::File,
    locked: bool,
    /// Held for the whole run (one-shot commands) rather than per input.
    hold: bool,
    /// The sealed bytes this process last read or wrote.
    last: Vec<u8>,
}

impl DeviceFile {
    fn lock(&mut self) -> Result<()> {
        if !self.locked {
            self.lock.lock().context("cannot lock the device state")?;
            self.locked = true;
        }
        Ok(())
    }

    /// Takes the lock; returns the stored state if another process changed
    /// it since this one last read or wrote it.
    pub fn acquire(&mut self) -> Result<Option<Vec<u8>>> {
        self.lock()?;
        let now = self.home.read_sealed()?;
        if now == self.last {
            return Ok(None);
        }
        self.last.clone_from(&now);
        Ok(Some(now))
    }

    /// From now on the lock is taken per input only, and released now.
    pub fn release(&mut self) {
        self.hold = false;
        if self.locked {
            let _ = self.lock.unlock();
            self.locked = false;
        }
    }

    pub fn held(&self) -> bool {
        self.hold
    }

    /// Stores a sealed state the driver produced (the lock is held).
    pub fn save(&mut self, sealed: &[u8]) -> Result<()> {
        self.lock()?;
        self.home.write_sealed(sealed)?;
        self.last = sealed.to_vec();
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes a file readable by its owner only (0600), flushed to disk.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

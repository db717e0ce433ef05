// The seeker's worker (a dedicated module worker, same origin, a file of the
// signed release): the seeker's driver runs here — Argon2id key derivation,
// the proof of work, the relay sockets — so the page's thread stays free
// and Quick exit answers at once (it terminates this worker). The page
// hands over the module it verified against the release, already compiled,
// and the pinned configuration; see core.js, "the seeker worker", and
// docs/WEB_CLIENT.md.

import { serveSeekerWorker } from "./core.js";

serveSeekerWorker();

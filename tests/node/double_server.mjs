// What the provider doubles (payments_listing, rafiki_admin, stripe_events) share: an HTTP
// server on 127.0.0.1 port 0 that prints {"port": N} once listening, re-reads its control file
// on every request (a test rewrites it between runs, by rename, so a read never sees half a
// file), makes the misbehaviours a test asks for, and counts what it did for GET /__stats.
//
// A double describes itself with:
//   check(request) -> {refuse: {status, body, headers?}} | {accept: parsed}
//       every check the real service makes (route, authentication, parameters), in its order;
//   answer(parsed, control, endless) -> {body, items}
//       the normal answer; endless = {serial} when the control file says "endless";
//   huge: {prefix, item(i), suffix}       a valid JSON answer of more than HUGE_BYTES, in parts;
//   empty: object                         the answer /__redirected gives a client that follows;
//   error(status, message) -> object      the provider's error body;
//   paged: whether "endless" applies.
//
// Behaviours (the control file's "behaviour"), applied to a request that passed check():
//   "normal" (or absent), "status:NNN", "invalid_json", "huge", "redirect", "hang", "endless".
import { createServer } from 'node:http'
import { readFileSync } from 'node:fs'

// More than the 10 MiB a reconciling client accepts from a provider.
export const HUGE_BYTES = 10 * 1024 * 1024 + 512 * 1024
const MAX_REQUEST_BYTES = 1024 * 1024
const RECENT = 200

export function readControl (path) {
  const control = JSON.parse(readFileSync(path, 'utf8'))
  if (control === null || typeof control !== 'object' || Array.isArray(control)) {
    throw new Error(`${path}: the control file must hold a JSON object`)
  }
  return control
}

export function json (status, body, headers = {}) {
  return { status, body, headers }
}

function send (res, { status, body, headers = {} }) {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers
  })
  res.end(text)
}

// The body, or an error once it is all read (so the 413 still reaches the client).
function readBody (req) {
  return new Promise((resolve, reject) => {
    const chunks = []
    let size = 0
    req.on('data', (chunk) => {
      size += chunk.length
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk)
    })
    req.on('end', () => {
      if (size > MAX_REQUEST_BYTES) reject(new Error(`request body over ${MAX_REQUEST_BYTES} bytes`))
      else resolve(Buffer.concat(chunks))
    })
    req.on('error', reject)
  })
}

// Resolves when the socket can take more, or is gone (then res.destroyed tells which).
function drained (res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}

// Chunked (no Content-Length): a client learns the size only by counting what it reads.
async function streamHuge (res, { prefix, item, suffix }) {
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' })
  let written = 0
  let index = 0
  let chunk = prefix
  while (written < HUGE_BYTES && !res.destroyed) {
    while (chunk.length < 65536) {
      chunk += (index === 0 ? '' : ',') + JSON.stringify(item(index))
      index++
    }
    written += Buffer.byteLength(chunk)
    const more = res.write(chunk)
    chunk = ''
    if (!more) await drained(res)
  }
  if (!res.destroyed) res.end(suffix)
}

export function serveDouble (name, controlFile, double) {
  try {
    readControl(controlFile)
  } catch (err) {
    process.stderr.write(`${name}: cannot read the control file: ${err.message}\n`)
    process.exit(2)
  }
  const stats = {
    requests: 0, // every request but /__stats and /__redirected
    served: 0, // normal answers (endless pages included)
    refused: 0, // refusals: 4xx, and GraphQL errors answered with 200
    pages: 0, // normal answers that carried a list
    items: 0, // records in those lists
    misbehaved: 0, // answers the behaviour made: status, invalid_json, huge, redirect, hang
    followed: 0, // requests to the redirect's target: a client that followed a 302
    hanging: 0, // requests held open now
    recent: [] // the last requests: {method, url, status, behaviour, detail}
  }
  let endlessSerial = 0

  function note (req, status, behaviour, detail) {
    stats.recent.push({ method: req.method, url: req.url, status, behaviour, detail })
    if (stats.recent.length > RECENT) stats.recent.shift()
  }

  async function handle (req, res) {
    const path = new URL(req.url, 'http://double').pathname
    if (path === '/__stats') {
      send(res, json(200, stats))
      return
    }
    if (path === '/__redirected') {
      stats.followed++
      send(res, json(200, double.empty))
      return
    }
    stats.requests++
    let body
    try {
      body = await readBody(req)
    } catch (err) {
      stats.refused++
      note(req, 413, null, err.message)
      send(res, json(413, double.error(413, err.message)))
      return
    }
    let control
    try {
      control = readControl(controlFile)
    } catch (err) {
      process.stderr.write(`${name}: ${err.message}\n`)
      note(req, 500, null, err.message)
      send(res, json(500, double.error(500, `control file: ${err.message}`)))
      return
    }
    const checked = double.check({ method: req.method, url: req.url, path, headers: req.headers, body })
    if (checked.refuse) {
      stats.refused++
      note(req, checked.refuse.status, null, checked.detail ?? checked.refuse.body)
      send(res, checked.refuse)
      return
    }
    const behaviour = control.behaviour ?? 'normal'
    note(req, null, behaviour, checked.detail)
    // "delay_ms": a slow provider (still answering), so a test can act while a client waits.
    if (Number.isInteger(control.delay_ms) && control.delay_ms > 0) {
      await new Promise((resolve) => setTimeout(resolve, control.delay_ms))
    }
    const entry = stats.recent[stats.recent.length - 1]
    const status = /^status:(\d{3})$/.exec(behaviour)
    if (behaviour === 'normal' || (behaviour === 'endless' && double.paged)) {
      const endless = behaviour === 'endless' ? { serial: ++endlessSerial } : null
      const answer = double.answer(checked.accept, control, endless)
      entry.status = answer.status ?? 200
      if (answer.items === undefined) {
        stats.refused++
      } else {
        stats.served++
        stats.pages++
        stats.items += answer.items
      }
      send(res, json(entry.status, answer.body, answer.headers))
      return
    }
    stats.misbehaved++
    if (status) {
      entry.status = Number(status[1])
      send(res, json(entry.status, double.error(entry.status, `the double answers ${behaviour}`)))
    } else if (behaviour === 'invalid_json') {
      entry.status = 200
      const text = '<html><body>502 Bad Gateway</body></html>'
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
      res.end(text)
    } else if (behaviour === 'huge') {
      entry.status = 200
      await streamHuge(res, double.huge)
    } else if (behaviour === 'redirect') {
      entry.status = 302
      const { port } = server.address()
      const location = control.redirect_to ?? `http://127.0.0.1:${port}/__redirected`
      res.writeHead(302, { Location: location, 'Content-Length': 0 })
      res.end()
    } else if (behaviour === 'hang') {
      // Read, never answered: only the client's own timeout ends it.
      stats.hanging++
      res.on('close', () => { stats.hanging-- })
    } else {
      stats.misbehaved--
      const message = `unknown behaviour ${JSON.stringify(behaviour)}`
      process.stderr.write(`${name}: ${message}\n`)
      entry.status = 500
      send(res, json(500, double.error(500, message)))
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      process.stderr.write(`${name}: ${err.stack}\n`)
      if (!res.headersSent) send(res, json(500, double.error(500, String(err.message))))
      else res.destroy()
    })
  })
  // A held request must outlive Node's own limits on a slow client.
  server.requestTimeout = 0
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n')
  })
  // Held requests would keep close() waiting: exit at once.
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0))
  return server
}

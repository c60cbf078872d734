// A double of Stripe's List all events, GET /v1/events (https://docs.stripe.com/api/events/list),
// with the checks Stripe makes:
//   * the secret key as `Authorization: Bearer KEY` (or HTTP Basic with the key as the user name,
//     which Stripe also takes); 401 otherwise, in Stripe's error shape;
//   * parameters: created (exact, or created[gt|gte|lt|lte], Unix seconds), limit (1 to 100,
//     default 10), starting_after / ending_before (an event id; one of them), type (a name or a
//     group with * as wildcard) / types[] (up to 20 names; not both), delivery_success,
//     expand[] (taken, nothing here to expand); anything else is "Received unknown parameter",
//     and every bad value a 400 invalid_request_error naming the param;
//   * the list: {"object": "list", "url": "/v1/events", "has_more", "data"}, newest first (by
//     created, then id), and only the last 30 days (Stripe keeps events listable that long).
//
// usage: node stripe_events.mjs CONTROL_FILE --key sk_test_...
// CONTROL_FILE: {"events": [full Stripe event objects: {id, object, type, created, data, ...}],
// "behaviour"?, "redirect_to"?}. A starting_after / ending_before id must be one of the events.
// Prints {"port": N} once listening; GET /__stats answers the counts (double_server.mjs).
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { parseArgs } from 'node:util'
import { json, serveDouble } from './double_server.mjs'

const { values, positionals } = parseArgs({
  options: { key: { type: 'string' } },
  allowPositionals: true
})
if (positionals.length !== 1 || !/^[sr]k_(test|live)_[0-9A-Za-z_]+$/.test(values.key ?? '')) {
  process.stderr.write('usage: node stripe_events.mjs CONTROL_FILE --key sk_test_...\n')
  process.exit(2)
}
const key = Buffer.from(values.key)
const RETENTION_SECONDS = 30 * 24 * 60 * 60
const TYPES_MAX = 20

function error (status, message, extra = {}) {
  const type = status >= 500 ? 'api_error' : 'invalid_request_error'
  return { error: { type, message, ...extra } }
}

function stripeError (status, message, extra = {}) {
  const requestId = `req_${randomBytes(7).toString('hex')}`
  return { refuse: json(status, error(status, message, { request_log_url: `https://dashboard.stripe.com/test/logs/${requestId}`, ...extra }), { 'Request-Id': requestId }), detail: message }
}

function givenKey (header) {
  if (header === undefined) return null
  const bearer = /^Bearer (.*)$/i.exec(header)
  if (bearer) return bearer[1]
  const basic = /^Basic ([A-Za-z0-9+/=]*)$/i.exec(header)
  if (basic) return Buffer.from(basic[1], 'base64').toString('utf8').replace(/:.*$/s, '')
  return ''
}

function keyMatches (given) {
  const bytes = Buffer.from(given)
  return bytes.length === key.length && timingSafeEqual(bytes, key)
}

// Stripe shows a wrong key with all but its last four characters masked.
const masked = (given) => given.length > 12 ? `${given.slice(0, 8)}${'*'.repeat(given.length - 12)}${given.slice(-4)}` : given

const SCALAR_PARAMS = new Set(['created', 'created[gt]', 'created[gte]', 'created[lt]', 'created[lte]',
  'limit', 'starting_after', 'ending_before', 'type', 'delivery_success'])
const LIST_PARAMS = /^(types|expand)\[(\d*)\]$/

function integer (params, name) {
  const text = params.get(name)
  if (!/^-?[0-9]+$/.test(text)) throw stripeError(400, `Invalid integer: ${text}`, { param: name })
  return Number(text)
}

function readParams (search) {
  const params = new URLSearchParams(search)
  const parsed = { created: [], limit: 10, types: [], type: null, startingAfter: null, endingBefore: null, deliverySuccess: null }
  for (const name of new Set(params.keys())) {
    const list = LIST_PARAMS.exec(name)
    if (list) {
      if (list[1] === 'types') parsed.types.push(...params.getAll(name))
      continue
    }
    if (!SCALAR_PARAMS.has(name)) throw stripeError(400, `Received unknown parameter: ${name}`, { param: name })
  }
  for (const [name, operator] of [['created', 'eq'], ['created[gt]', 'gt'], ['created[gte]', 'gte'], ['created[lt]', 'lt'], ['created[lte]', 'lte']]) {
    if (params.has(name)) parsed.created.push([operator, integer(params, name)])
  }
  if (params.has('limit')) {
    parsed.limit = integer(params, 'limit')
    if (parsed.limit < 1) throw stripeError(400, 'This value must be greater than or equal to 1.', { param: 'limit' })
    if (parsed.limit > 100) throw stripeError(400, 'This value must be less than or equal to 100.', { param: 'limit' })
  }
  if (params.has('starting_after') && params.has('ending_before')) {
    throw stripeError(400, 'You may only specify one of these parameters: ending_before, starting_after.', { param: 'starting_after' })
  }
  parsed.startingAfter = params.get('starting_after')
  parsed.endingBefore = params.get('ending_before')
  if (params.has('type')) {
    if (parsed.types.length) throw stripeError(400, 'You may only specify one of these parameters: type, types.', { param: 'type' })
    parsed.type = params.get('type')
  }
  if (parsed.types.length > TYPES_MAX) throw stripeError(400, `You can filter by at most ${TYPES_MAX} types.`, { param: 'types' })
  if (params.has('delivery_success')) {
    const text = params.get('delivery_success')
    if (text !== 'true' && text !== 'false') throw stripeError(400, `Invalid boolean: ${text}`, { param: 'delivery_success' })
    parsed.deliverySuccess = text === 'true'
  }
  return parsed
}

function check ({ method, url, path, headers }) {
  const given = givenKey(headers.authorization)
  if (given === null || given === '') {
    return stripeError(401, "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.")
  }
  if (!keyMatches(given)) return stripeError(401, `Invalid API Key provided: ${masked(given)}`)
  if (path !== '/v1/events' || method !== 'GET') {
    return stripeError(404, `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`)
  }
  try {
    const parsed = readParams(new URL(url, 'http://double').search)
    return { accept: parsed, detail: parsed }
  } catch (refusal) {
    if (refusal.refuse) return refusal
    throw refusal
  }
}

const COMPARE = { eq: (a, b) => a === b, gt: (a, b) => a > b, gte: (a, b) => a >= b, lt: (a, b) => a < b, lte: (a, b) => a <= b }

// Newest first: created descending, then id descending.
function newerFirst (a, b) {
  if (a.created !== b.created) return b.created - a.created
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0
}

function typeMatcher (parsed) {
  if (parsed.types.length) return (type) => parsed.types.includes(type)
  if (parsed.type === null) return () => true
  const pattern = new RegExp(`^${parsed.type.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)
  return (type) => pattern.test(type)
}

function answer (parsed, control, endless) {
  const now = Math.floor(Date.now() / 1000)
  const headers = { 'Request-Id': `req_${randomBytes(7).toString('hex')}` }
  if (endless) {
    const type = parsed.types[0] ?? (parsed.type && !parsed.type.includes('*') ? parsed.type : 'payment_intent.succeeded')
    const id = `evt_endless${endless.serial}x${randomBytes(6).toString('hex')}`
    const event = {
      id, object: 'event', type, created: now, livemode: false, pending_webhooks: 0,
      api_version: '2024-06-20', request: { id: null, idempotency_key: null }, data: { object: { id: `pi_${id}` } }
    }
    return { body: { object: 'list', url: '/v1/events', has_more: true, data: [event] }, items: 1, headers }
  }
  const all = control.events ?? []
  for (const event of all) {
    if (typeof event.id !== 'string' || !Number.isInteger(event.created)) {
      throw new Error(`control file: an event needs a string id and an integer created: ${JSON.stringify(event)}`)
    }
  }
  const matches = typeMatcher(parsed)
  const listed = all
    .filter((event) => event.created >= now - RETENTION_SECONDS)
    .filter((event) => parsed.created.every(([operator, value]) => COMPARE[operator](event.created, value)))
    .filter((event) => matches(event.type))
    .filter((event) => parsed.deliverySuccess === null || (event.pending_webhooks === 0) === parsed.deliverySuccess)
    .sort(newerFirst)
  const cursorId = parsed.startingAfter ?? parsed.endingBefore
  let data
  let hasMore
  if (cursorId !== null) {
    const cursor = all.find((event) => event.id === cursorId)
    if (!cursor) {
      const param = parsed.startingAfter !== null ? 'starting_after' : 'ending_before'
      const refusal = stripeError(400, `No such event: '${cursorId}'`, { param, code: 'resource_missing' })
      return { status: 400, body: refusal.refuse.body, headers: refusal.refuse.headers }
    }
    if (parsed.startingAfter !== null) {
      const after = listed.filter((event) => newerFirst(event, cursor) > 0)
      data = after.slice(0, parsed.limit)
      hasMore = after.length > parsed.limit
    } else {
      const before = listed.filter((event) => newerFirst(event, cursor) < 0)
      data = before.slice(-parsed.limit)
      hasMore = before.length > parsed.limit
    }
  } else {
    data = listed.slice(0, parsed.limit)
    hasMore = listed.length > parsed.limit
  }
  return { body: { object: 'list', url: '/v1/events', has_more: hasMore, data }, items: data.length, headers }
}

serveDouble('stripe_events', positionals[0], {
  check,
  answer,
  error,
  paged: true,
  empty: { object: 'list', url: '/v1/events', has_more: false, data: [] },
  huge: {
    prefix: '{"object":"list","url":"/v1/events","has_more":false,"data":[',
    item: (i) => ({
      id: `evt_huge${i}`,
      object: 'event',
      type: 'payment_intent.succeeded',
      created: 0,
      data: { object: { id: `pi_huge${i}`, object: 'payment_intent', description: 'x'.repeat(900) } }
    }),
    suffix: ']}'
  }
})

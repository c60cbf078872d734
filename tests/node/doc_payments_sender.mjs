// Runs the payments service's module from docs/integrate-payments.md as its users will: the
// TypeScript is type-checked (strict) and compiled with the TypeScript compiler, then imported,
// and its sendPaymentWebhook() is called once per event.
//
// usage: node doc_payments_sender.mjs MODULE.ts EVENTS_JSON
// (GATEWAY_WEBHOOK_URL and PAYMENTS_WEBHOOK_SECRET in the environment, as the module reads them)
// Prints one JSON document: {diagnostics: [...]} when the module does not compile, else
// {results: [{answer} | {error, status, body}]}, one per event.
import { readFileSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import ts from 'typescript'

const [modulePath, eventsJson] = process.argv.slice(2)
const options = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  esModuleInterop: true,
  skipLibCheck: true,
  types: ['node']
}
const program = ts.createProgram([modulePath], options)
const diagnostics = ts.getPreEmitDiagnostics(program).map((d) =>
  ts.flattenDiagnosticMessageText(d.messageText, '\n'))
if (diagnostics.length > 0) {
  process.stdout.write(JSON.stringify({ diagnostics }) + '\n')
  process.exit(0)
}
const compiled = ts.transpileModule(readFileSync(modulePath, 'utf8'), {
  compilerOptions: { ...options, noEmit: false }
})
const output = modulePath.replace(/\.ts$/, '.mjs')
writeFileSync(output, compiled.outputText)
const { sendPaymentWebhook } = await import(pathToFileURL(output).href)

const results = []
for (const event of JSON.parse(eventsJson)) {
  try {
    results.push({ answer: await sendPaymentWebhook(event) })
  } catch (err) {
    results.push({
      error: err.message,
      status: err.response ? err.response.status : null,
      body: err.response ? err.response.data : null
    })
  }
}
process.stdout.write(JSON.stringify({ results }) + '\n')

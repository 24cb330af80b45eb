// The page: connect with the chosen SDK and transport, list the tools, pick a project and a build, and
// show what diagnose_build says about it. Everything the user sees is set here.
import * as v1 from './sdk-v1.js';
import * as v2 from './sdk-v2.js';

const sdks = { v1, v2 };
const $ = (id) => document.getElementById(id);
let client;

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').className = isError ? 'error' : '';
}

function option(value, text) {
  const element = document.createElement('option');
  element.value = value;
  element.textContent = text;
  return element;
}

/** The structured result of a tool call, or an Error with the tool's error text. */
function resultOf(result) {
  const text = (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
  if (result.isError) throw new Error(text || 'the tool failed');
  return { data: result.structuredContent ?? JSON.parse(text), text };
}

async function call(name, args = {}) {
  return resultOf(await client.callTool({ name, arguments: args }));
}

/** Streamable HTTP at <url>/mcp; with 'auto', SSE at <url>/sse when that fails (a server that has no /mcp). */
async function connect(sdk, base, transport, headers, era) {
  const attempts = transport === 'auto' ? ['streamable-http', 'sse'] : [transport];
  const failures = [];
  for (const name of attempts) {
    const endpoint = `${base}${name === 'sse' ? '/sse' : '/mcp'}`;
    try {
      return { ...(await sdk.connect({ endpoint, transport: name, headers, era })), transport: name };
    } catch (error) {
      failures.push(`${name === 'sse' ? 'SSE' : 'Streamable HTTP'}: ${error.message}`);
    }
  }
  throw new Error(failures.join('; '));
}

async function onConnect(event) {
  event.preventDefault();
  const sdk = sdks[$('sdk').value];
  const era = $('era').value;
  const base = $('server-url').value.trim().replace(/\/+$/, '');
  const headers = { Authorization: `Bearer ${$('token').value.trim()}` };
  $('tools-section').hidden = $('diagnose-section').hidden = true;
  if (!sdk.eras.includes(era)) {
    setStatus(`${sdk.label} cannot speak protocol ${era}.`, true);
    return;
  }
  await client?.close().catch(() => {});
  client = undefined;
  setStatus('Connecting…');
  try {
    const connected = await connect(sdk, base, $('transport').value, headers, era);
    client = connected.client;
    const via = connected.transport === 'sse' ? 'SSE' : 'Streamable HTTP';
    setStatus(`Connected to ${base} via ${via}, protocol ${connected.protocolVersion}, ${sdk.label}.`);
    await showTools();
    await showProjects();
  } catch (error) {
    setStatus(`Could not connect: ${error.message}`, true);
  }
}

async function showTools() {
  const { tools } = await client.listTools();
  $('tools').replaceChildren(
    ...tools.map((tool) => {
      const item = document.createElement('li');
      const name = document.createElement('code');
      name.textContent = tool.name;
      const about = document.createElement('span');
      about.textContent = ` ${tool.title ?? ''}`;
      item.append(name, about);
      return item;
    }),
  );
  $('tools-section').hidden = false;
}

async function showProjects() {
  const { data } = await call('list_projects');
  $('project').replaceChildren(...data.projects.map((p) => option(p.id, p.name ?? p.id)));
  $('diagnose-section').hidden = false;
  await showBuilds();
}

let buildsShown = 0; // a later project choice wins over an answer still on its way

async function showBuilds() {
  const shown = ++buildsShown;
  $('diagnose').disabled = true;
  const projectId = $('project').value;
  const builds = projectId ? (await call('list_builds', { project_id: projectId })).data.builds : [];
  if (shown !== buildsShown) return;
  $('build').replaceChildren(
    ...builds.map((b) => option(b.id, `#${b.build_number} ${b.branch ?? ''} (${b.status ?? 'no jobs'})`)),
  );
  $('diagnose').disabled = builds.length === 0;
}

async function onDiagnose() {
  $('summary').textContent = 'Diagnosing…';
  $('problem-jobs').replaceChildren();
  $('result').textContent = '';
  try {
    const { data, text } = await call('diagnose_build', {
      project_id: $('project').value,
      build_id: $('build').value,
    });
    $('summary').textContent = data.summary;
    $('problem-jobs').replaceChildren(
      ...(data.problem_jobs ?? []).map((problem) => {
        const item = document.createElement('li');
        const failed = problem.failed_tests_total ? `, ${problem.failed_tests_total} failed tests` : '';
        item.textContent = `${problem.job.name}: ${problem.job.state}${failed}`;
        return item;
      }),
    );
    $('result').textContent = text;
  } catch (error) {
    $('summary').textContent = `diagnose_build failed: ${error.message}`;
  }
}

$('connect-form').addEventListener('submit', onConnect);
$('project').addEventListener('change', () => showBuilds().catch((e) => setStatus(e.message, true)));
$('diagnose').addEventListener('click', onDiagnose);

// Admin → Groups: groups of users, the models and providers each allows,
// their quota defaults, and their members (see "Groups and model access"
// in docs/ARCHITECTURE.md for the rule).

import { html, useState, useEffect } from './lib.js';
import { api, get, post, patch, del } from './api.js';
import { Card, useList } from './settings.js';
import { describeError, ErrorBanner, Spinner, confirmDialog, toast } from './ui.js';

const enc = encodeURIComponent;

const RULE = 'A user in no group that lists models sees every model. A user in such groups sees only what their groups allow together. Admins always see every model. A group that lists no models and no providers allows every model and only gives quota defaults. A user\'s own quota comes first, then the most generous of their groups\', then the server default.';

function accessText(g) {
  if (!g.restricts_models) return 'Every model';
  const parts = [];
  if (g.models.length) parts.push(g.models.length === 1 ? g.models[0] : `${g.models.length} models`);
  if (g.providers.length) parts.push(g.providers.length === 1 ? `all of ${g.providers[0]}` : `${g.providers.length} providers`);
  return parts.join(', ');
}

function quotaText(q) {
  if (!q) return 'None';
  const parts = [];
  if (q.messages_per_day != null) parts.push(`${q.messages_per_day} messages`);
  if (q.tokens_per_day != null) parts.push(`${q.tokens_per_day} tokens`);
  const daily = parts.length ? parts.join(', ') + ' a day' : '';
  const storage = q.storage_bytes == null ? '' : q.storage_bytes === 0 ? 'unlimited storage' : `${mib(q.storage_bytes)} MiB of files`;
  return [daily, storage].filter(Boolean).join('; ') || 'None';
}

/** Bytes as MiB, to two decimals at most. */
function mib(bytes) {
  return Math.round((bytes / 1048576) * 100) / 100;
}

/** One group opened for editing: name, access, quota, members. */
function GroupEditor({ id, onChanged, onClose }) {
  const [g, setG] = useState(null);
  const [error, setError] = useState(null);
  const [catalog, setCatalog] = useState(null);
  const [users, setUsers] = useState(null);
  const [form, setForm] = useState(null);
  const [search, setSearch] = useState('');
  const load = async () => {
    try {
      const d = await get('/admin/groups/' + enc(id));
      setG(d);
      setForm({
        name: d.name,
        models: new Set(d.models),
        providers: new Set(d.providers),
        m: d.quota?.messages_per_day ?? '',
        t: d.quota?.tokens_per_day ?? '',
        s: d.quota?.storage_bytes == null ? '' : mib(d.quota.storage_bytes),
      });
    } catch (e) { setError(e); }
  };
  useEffect(() => {
    load();
    get('/admin/models').then((r) => setCatalog(r.items), setError);
    get('/admin/users', { limit: 200 }).then((r) => setUsers(r.items), setError);
  }, [id]); // eslint-disable-line
  if (error && !g) return html`<${ErrorBanner} error=${error} compact />`;
  if (!g || !form) return html`<${Spinner} label="Loading the group" />`;
  const modelIds = catalog ? [...new Set(catalog.map((m) => m.id))].sort() : [];
  const providerNames = catalog ? [...new Set(catalog.map((m) => m.provider))].sort() : [];
  const toggle = (key, v) => setForm((f) => {
    const s = new Set(f[key]);
    if (s.has(v)) s.delete(v); else s.add(v);
    return { ...f, [key]: s };
  });
  const num = (s) => (String(s).trim() === '' ? null : Number(s));
  const save = async (e) => {
    e.preventDefault();
    setError(null);
    const m = num(form.m);
    const t = num(form.t);
    const sMib = num(form.s);
    const st = sMib == null ? null : Math.round(sMib * 1048576);
    try {
      const d = await patch('/admin/groups/' + enc(id), {
        name: form.name.trim(),
        models: [...form.models].sort(),
        providers: [...form.providers].sort(),
        quota: m == null && t == null && st == null ? null : { messages_per_day: m, tokens_per_day: t, storage_bytes: st },
      });
      setG(d);
      onChanged();
      toast('Group saved');
    } catch (err) { setError(err); }
  };
  const memberIds = new Set(g.members.map((m) => m.id));
  const add = async (u) => {
    try {
      await api('PUT', `/admin/groups/${enc(id)}/members/${enc(u.id)}`);
      setSearch('');
      await load();
      onChanged();
      toast(`${u.username} added`);
    } catch (err) { toast(describeError(err).text, 'error'); }
  };
  const remove = async (u) => {
    try {
      await del(`/admin/groups/${enc(id)}/members/${enc(u.id)}`);
      await load();
      onChanged();
      toast(`${u.username} removed`);
    } catch (err) { toast(describeError(err).text, 'error'); }
  };
  const q = search.trim().toLowerCase();
  const matching = q && users ? users.filter((u) => u.username.toLowerCase().includes(q)) : [];
  const found = matching.filter((u) => !memberIds.has(u.id)).slice(0, 8);
  return html`<${Card} id="group-edit" title=${'Group: ' + g.name}
      actions=${html`<button type="button" class="btn small" onClick=${onClose}>Close</button>`}>
    <${ErrorBanner} error=${error} compact />
    <form onSubmit=${save} aria-label=${'Settings of group ' + g.name} data-testid="group-form">
      <label class="field"><span>Name</span><input required maxlength="64" value=${form.name}
        onInput=${(e) => setForm((f) => ({ ...f, name: e.target.value }))} /></label>
      <fieldset class="group-checks">
        <legend>Models members may use</legend>
        <p class="muted small">Leave every box empty to allow every model.</p>
        ${!catalog && html`<${Spinner} label="Loading models" />`}
        ${catalog && modelIds.length === 0 && html`<p class="muted small">No models yet: add a provider first.</p>`}
        <div class="group-check-grid">
          ${modelIds.map((m) => html`<label class="check" key=${'m' + m}>
            <input type="checkbox" checked=${form.models.has(m)} onChange=${() => toggle('models', m)} data-testid=${'allow-model-' + m} />
            <span>${m}</span></label>`)}
        </div>
      </fieldset>
      ${providerNames.length > 0 && html`<fieldset class="group-checks">
        <legend>Whole providers members may use</legend>
        <div class="group-check-grid">
          ${providerNames.map((p) => html`<label class="check" key=${'p' + p}>
            <input type="checkbox" checked=${form.providers.has(p)} onChange=${() => toggle('providers', p)} />
            <span>Every model of ${p}</span></label>`)}
        </div>
      </fieldset>`}
      <fieldset class="group-checks">
        <legend>Quota defaults for members</legend>
        <div class="row-form">
          <label class="field"><span>Messages / day</span><input type="number" min="0" step="1" placeholder="server default" value=${form.m}
            onInput=${(e) => setForm((f) => ({ ...f, m: e.target.value }))} /></label>
          <label class="field"><span>Tokens / day</span><input type="number" min="0" step="1" placeholder="server default" value=${form.t}
            onInput=${(e) => setForm((f) => ({ ...f, t: e.target.value }))} /></label>
          <label class="field"><span>Files (MiB, 0 = no limit)</span><input type="number" min="0" step="any" placeholder="server default" value=${form.s}
            data-testid="group-storage" onInput=${(e) => setForm((f) => ({ ...f, s: e.target.value }))} /></label>
        </div>
      </fieldset>
      <button type="submit" class="btn primary">Save group</button>
    </form>
    <h3 class="sub">Members</h3>
    ${g.members.length === 0 && html`<p class="muted small">No members yet.</p>`}
    <ul class="group-members" data-testid="group-members">
      ${g.members.map((u) => html`<li key=${u.id}><span>${u.username}</span>
        <button type="button" class="btn small" aria-label=${`Remove ${u.username} from ${g.name}`} onClick=${() => remove(u)}>Remove</button></li>`)}
    </ul>
    <label class="field"><span>Add a member</span><input type="search" placeholder="Search users by name" value=${search} autocomplete="off"
      data-testid="member-search" onInput=${(e) => setSearch(e.target.value)} /></label>
    ${q && users && found.length === 0 && html`<p class="muted small" role="status">${matching.length
      ? `Everyone matching “${search.trim()}” is in this group already.`
      : `No user matches “${search.trim()}”.`}</p>`}
    <ul class="group-members">
      ${found.map((u) => html`<li key=${u.id}><span>${u.username}</span>
        <button type="button" class="btn small primary" aria-label=${`Add ${u.username} to ${g.name}`} onClick=${() => add(u)}>Add</button></li>`)}
    </ul>
  <//>`;
}

export function AdminGroups() {
  const { data, error, load } = useList('/admin/groups');
  const [name, setName] = useState('');
  const [formError, setFormError] = useState(null);
  const [open, setOpen] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    setFormError(null);
    try {
      const g = await post('/admin/groups', { name: name.trim() });
      setName('');
      await load();
      setOpen(g.id);
      toast('Group created');
    } catch (err) { setFormError(err); }
  };
  const remove = async (g) => {
    if (!await confirmDialog({ title: `Delete the group ${g.name}?`, body: 'Its members keep their accounts; what the group allowed and its quota defaults no longer apply to them.', confirm: 'Delete', danger: true })) return;
    try {
      await del('/admin/groups/' + enc(g.id));
      if (open === g.id) setOpen(null);
      await load();
      toast('Group deleted');
    } catch (err) { toast(describeError(err).text, 'error'); }
  };
  const items = data?.items;
  return html`<${Card} id="groups" title="Groups" description=${RULE}>
    <${ErrorBanner} error=${error} onRetry=${load} compact />
    ${!data && !error && html`<${Spinner} />`}
    ${items && items.length === 0 && html`<p class="muted">No groups yet.</p>`}
    ${items && items.length > 0 && html`<div class="table-wrap"><table class="table">
      <thead><tr><th scope="col">Group</th><th scope="col" class="wide-only">Models</th><th scope="col" class="wide-only">Quota defaults</th><th scope="col">Members</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${items.map((g) => html`<tr key=${g.id}>
        <td><strong>${g.name}</strong>
          <div class="narrow-only small muted">${accessText(g)} · ${quotaText(g.quota)}</div></td>
        <td class="small wide-only">${accessText(g)}</td>
        <td class="small wide-only">${quotaText(g.quota)}</td>
        <td>${g.member_count}</td>
        <td class="actions">
          <button type="button" class="btn small" aria-label=${'Edit group ' + g.name} onClick=${() => setOpen(g.id)}>Edit</button>
          <button type="button" class="btn small danger-outline" aria-label=${'Delete group ' + g.name} onClick=${() => remove(g)}>Delete</button>
        </td></tr>`)}</tbody></table></div>`}
    <h3 class="sub">Add a group</h3>
    <form class="row-form" onSubmit=${create}>
      <label class="field"><span>Group name</span><input required maxlength="64" value=${name} autocomplete="off"
        onInput=${(e) => setName(e.target.value)} /></label>
      <button type="submit" class="btn primary">Add group</button>
    </form>
    <${ErrorBanner} error=${formError} compact />
  <//>
  ${open && html`<${GroupEditor} key=${open} id=${open} onChanged=${load} onClose=${() => setOpen(null)} />`}`;
}

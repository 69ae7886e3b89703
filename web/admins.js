// Admin users: who may sign in to this page with a user name and password. Listing,
// adding, a new password and removal, each one call to /appliance/v1/admin/users; a new
// password or a removal ends that user's sessions on the server.

import { call } from './api.js';
import { h, when, errorBox, status } from './views.js';

const USERS = '/appliance/v1/admin/users';
const enc = encodeURIComponent;

export async function adminsView(main, message) {
  const { users } = await call('GET', USERS);
  const out = h('div', { 'aria-live': 'polite' }, message ? status(message) : '');
  const fail = (e) => out.replaceChildren(errorBox(e));

  const name = h('input', { id: 'new-admin-name', autocomplete: 'off', required: true, maxlength: '64' });
  const password = h('input', { id: 'new-admin-password', type: 'password', autocomplete: 'new-password', required: true });
  const add = h('form', { class: 'inline', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await call('POST', USERS, { UserName: name.value.trim(), Password: password.value });
      await adminsView(main, `Added ${name.value.trim()}.`);
    } catch (e) { fail(e); }
  } },
  h('label', { for: 'new-admin-name' }, 'User name'), name,
  h('label', { for: 'new-admin-password' }, 'Password'), password,
  h('button', { type: 'submit' }, 'Add admin'));

  const row = (u) => {
    const user = u.UserName;
    const fresh = h('input', { type: 'password', autocomplete: 'new-password', required: true, 'aria-label': `New password for ${user}` });
    const setPassword = h('form', { class: 'inline', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await call('PUT', `${USERS}/${enc(user)}/password`, { Password: fresh.value });
        await adminsView(main, `New password set for ${user}; their sessions ended.`);
      } catch (e) { fail(e); }
    } }, fresh, h('button', { type: 'submit' }, 'Set password'));
    const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${user}`, onclick: async () => {
      if (!window.confirm(`Remove the admin ${user}? Their sessions end now.`)) return;
      try {
        await call('DELETE', `${USERS}/${enc(user)}`);
        await adminsView(main, `Removed ${user}.`);
      } catch (e) { fail(e); }
    } }, 'Remove');
    return h('tr', {}, h('th', { scope: 'row' }, user), h('td', {}, when(u.CreatedAt)), h('td', {}, setPassword), h('td', {}, remove));
  };

  main.replaceChildren(
    h('h1', {}, 'Admins'),
    h('p', { class: 'muted' }, 'People who sign in with a user name and password. The API\'s access key (the credentials file) always works as well.'),
    users.length === 0 ? h('p', { id: 'no-admins', class: 'muted' }, 'No admin users yet.')
      : h('table', {}, h('thead', {}, h('tr', {}, ['User', 'Created', 'Password', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, users.map(row))),
    out,
    h('h2', {}, 'Add an admin'), add);
  return {};
}

// Sign-in: posts the key pair (or user and password) as JSON, then loads the app. The
// session cookie is HttpOnly, so nothing secret is kept in script-visible storage.
const form = document.getElementById('signin-form');
const error = document.getElementById('signin-error');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.textContent = '';
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    const response = await fetch('/appliance/v1/admin/session', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify({ user: form.user.value.trim(), secret: form.secret.value }),
    });
    if (response.ok) {
      window.location.assign('/');
      return;
    }
    let message = `sign-in failed (${response.status})`;
    try { message = (await response.json()).message || message; } catch (_) { /* not JSON */ }
    error.textContent = message;
    form.secret.select();
  } catch (e) {
    error.textContent = `cannot reach the control plane: ${e.message}`;
  } finally {
    button.disabled = false;
  }
});

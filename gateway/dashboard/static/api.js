// Calls to the admin API with the session cookie; a lost session shows the sign-in form.

export class ApiError extends Error {
  constructor(status, payload) {
    super((payload && payload.message) || `request failed (${status})`);
    this.status = status;
  }
}

async function answer(response) {
  if (response.status === 401) {
    window.location.reload();
    throw new ApiError(401, { message: "signed out" });
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, payload);
  return payload;
}

/** GET an admin path with query parameters (empty ones left out). */
export async function get(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const url = query.toString() ? `${path}?${query}` : path;
  return answer(await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }));
}

/** POST JSON to an admin path (the browser adds Origin, which the API checks). */
export async function post(path, body) {
  return answer(
    await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body || {}),
    }),
  );
}

/** A path segment, escaped. */
export function seg(value) {
  return encodeURIComponent(value);
}

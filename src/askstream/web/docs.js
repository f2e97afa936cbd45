// /docs: Swagger UI over this service's own /openapi.json. A file rather than
// the usual inline snippet because the page's Content-Security-Policy allows
// script from 'self' only (docs.html loads the vendored bundle first).

const TOKEN_KEY = "askstream.token"; // where the chat page keeps a bearer token (app.js)

function storedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: "Try it out" goes without a token
  }
}

window.ui = globalThis.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The default sends the spec's URL to validator.swagger.io: nothing leaves this origin.
  validatorUrl: null,
  // "Try it out" acts as the token the chat page was given, and only on this origin.
  requestInterceptor(request) {
    const token = storedToken();
    const sameOrigin = new URL(request.url, location.href).origin === location.origin;
    if (token && sameOrigin && !request.headers.Authorization) {
      request.headers.Authorization = `Bearer ${token}`;
    }
    return request;
  },
});

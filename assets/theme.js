// Runs before the first paint (a classic script, so the CSP allows it as a
// file): picks the saved theme so a dark page never flashes white.
(function () {
  var t = null;
  try { t = localStorage.getItem('confab.theme'); } catch (e) { /* no storage */ }
  if (t !== 'light' && t !== 'dark') {
    t = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  document.documentElement.setAttribute('data-theme', t);
  document.documentElement.style.colorScheme = t;
})();

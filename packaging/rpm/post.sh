# confab %post: state directory; enable and start on a first install
# ($1 = 1); an upgrade ($1 = 2) is restarted by %postun of the old package.
install -d -m 0700 -o confab -g confab /var/lib/confab
if [ "$1" -eq 1 ]; then
    chown root:confab /etc/confab /etc/confab/confab.toml 2>/dev/null || :
    chmod 0750 /etc/confab 2>/dev/null || :
    chmod 0640 /etc/confab/confab.toml 2>/dev/null || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now confab.service >/dev/null 2>&1 || :
    fi
elif [ "$1" -eq 1 ]; then
    systemctl enable confab.service >/dev/null 2>&1 || :
fi
exit 0

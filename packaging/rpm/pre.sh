# confab %pre: the system user the service runs as.
getent group confab >/dev/null || groupadd -r confab
getent passwd confab >/dev/null || \
    useradd -r -g confab -d /var/lib/confab -s /sbin/nologin -c "confab AI chat server" confab
exit 0
